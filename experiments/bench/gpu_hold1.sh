#!/usr/bin/env bash
# The pending GPU measurements of issue 24, one after another in the background (no two timed runs overlap).
# Usage on the GPU machine, from the repo root, with the wheels carried in .whl: bash experiments/bench/gpu_hold1.sh DIR
# then poll: sleep 300; tail DIR/log (ALLDONE at the end); copy DIR/*.json DIR/log into $OUT.
set -u
# the device's run ends by killing its session: detach into a new one first
[ -n "${_DETACHED:-}" ] || { _DETACHED=1 setsid bash "$0" "$@" < /dev/null > /dev/null 2>&1 & echo started; exit 0; }
D=${1:-/tmp/hold1}; mkdir -p "$D"
. experiments/bench/gpu_env.sh || exit 1
run() { echo "=== $(date +%T) $*" >> "$D/log"; "$@" >> "$D/log" 2>&1; echo "=== $(date +%T) rc=$?" >> "$D/log"; }
(
  # 8-bit storage at 50 steps with the sites that fit the disk: 10 blocks' streams (24 GB in e4m3)
  run python3 -m interp.cli bench --config wan1.3b --device cuda --steps 50 --repeats 1 --warmup 0 --only sampling \
      --sites 'blocks.[0-9].hook_resid_post' --capture-dtype float8_e4m3:token --scratch /tmp \
      --out "$D/bench-wan1.3b-h200-50steps-e4m3.json"
  # the store's writer beside a stand-in forward holding the GIL, against one plain thread: where 1.24x goes
  run python3 -m benchmarks.writer --gb 4 --steps 10 --sites 30 --repeats 1 --scratch /tmp --forward-ms 620
  echo ALLDONE >> "$D/log"
)
