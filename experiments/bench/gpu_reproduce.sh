#!/usr/bin/env bash
# The paper's reproduction of one model (issues 19, 24) in the background; a poll copies $D/res.tgz into $OUT.
# Usage on the GPU machine, from the repo root, with the wheels carried in .whl:
#   MODEL=maze-wan PRECISION=float32 ONLY=layer_swap,layer_skip bash experiments/bench/gpu_reproduce.sh DIR
# MODEL (default maze-wan), PRECISION (default: the files' float32), ONLY (default: every analysis of the model).
# Analyses already in DIR are cache hits, so a second invocation into the same DIR resumes where one stopped.
set -u
# the device's run ends by killing its session: detach into a new one first
[ -n "${_DETACHED:-}" ] || { _DETACHED=1 setsid bash "$0" "$@" < /dev/null > /dev/null 2>&1 & echo started; exit 0; }
D=${1:-/tmp/rep}; mkdir -p "$D"
. experiments/bench/gpu_env.sh || exit 1
M=${MODEL:-maze-wan}
(
  echo "=== $(date +%T) start $M ${PRECISION:-float32} ${ONLY:-all}" >> "$D/log"
  python3 -m interp.cli reproduce --model "$M" --device cuda --out "$D/$M" ${ONLY:+--only $ONLY} \
    ${PRECISION:+--set sampler.precision=$PRECISION} >> "$D/log" 2>&1
  echo "=== $(date +%T) rc=$?" >> "$D/log"
  tar czf "$D/res.tgz" --exclude='*.h5' -C "$D" "$M" log
  echo ALLDONE >> "$D/log"
)
