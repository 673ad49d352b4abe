#!/usr/bin/env bash
# The GPU measurements of issues 18 and 24, one after another in the background (no two timed runs overlap).
# Usage on the GPU machine, from the repo root, with the wheels carried in .whl: bash experiments/bench/gpu_hold1.sh DIR
set -u
D=${1:-/tmp/hold1}; mkdir -p "$D"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 WANDB_MODE=disabled
run() { echo "=== $(date +%T) $*" >> "$D/log"; "$@" >> "$D/log" 2>&1; echo "=== $(date +%T) rc=$?" >> "$D/log"; }
(
  run python3 -m benchmarks.pipeline --config a14b --device cuda --steps 10 --repeats 1 --only diffusers,bare,pooled,lens --out "$D"
  run python3 -m interp.cli bench --config wan1.3b --device cuda --steps 10 --repeats 2 --only sampling \
      --capture-dtype float16,float8_e4m3:token --scratch /tmp --out "$D/bench-wan1.3b-h200-10steps.json"
  run python3 -m benchmarks.probe_parity --device cuda --sklearn-jobs 16 --mazes 64
  run python3 -m interp.cli bench --config wan1.3b --device cuda --steps 50 --repeats 1 --only sampling \
      --sites 'blocks.*[05].hook_resid_post' --capture-dtype float16,float8_e4m3:token --scratch /tmp \
      --out "$D/bench-wan1.3b-h200-50steps.json"
  echo ALLDONE >> "$D/log"
) > /dev/null 2>&1 < /dev/null &
echo started
