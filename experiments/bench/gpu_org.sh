#!/usr/bin/env bash
# The organism's full paper reproduction (issue 19) in the background; a poll copies $D/res.tgz into $OUT.
# Usage on the GPU machine, from the repo root, with the wheels carried in .whl: bash experiments/bench/gpu_org.sh DIR
set -u
D=${1:-/tmp/org}; mkdir -p "$D"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 WANDB_MODE=disabled
(
  echo "=== $(date +%T) start" >> "$D/log"
  python3 -m interp.cli reproduce --model organism --device cuda --out "$D/organism" ${ONLY:+--only $ONLY} >> "$D/log" 2>&1
  echo "=== $(date +%T) rc=$?" >> "$D/log"
  tar czf "$D/res.tgz" --exclude='*.h5' -C "$D" organism log
  echo ALLDONE >> "$D/log"
) > /dev/null 2>&1 < /dev/null &
echo started
