#!/usr/bin/env bash
# The pending GPU measurements of issue 24 after the writeback thread's wakes were batched, one after another in the
# background (no two timed runs overlap).
# Usage on the GPU machine, from the repo root, with the wheels carried in .whl: bash experiments/bench/gpu_hold2.sh DIR
# then poll: sleep 300; tail DIR/log (ALLDONE at the end); copy DIR/*.json DIR/*.txt DIR/log into $OUT.
set -u
# the device's run ends by killing its session: detach into a new one first
[ -n "${_DETACHED:-}" ] || { _DETACHED=1 setsid bash "$0" "$@" < /dev/null > /dev/null 2>&1 & echo started; exit 0; }
D=${1:-/tmp/hold2}; mkdir -p "$D"
. experiments/bench/gpu_env.sh || exit 1
run() { local f=$1; shift; echo "=== $(date +%T) $*" >> "$D/log"; "$@" > "$D/$f" 2>&1; echo "=== $(date +%T) rc=$?" >> "$D/log"; }
(
  # the store's writer beside a stand-in forward holding the GIL: wakes per 256 MiB (thread), per chunk (thread@0), inline
  run writer.txt python3 -m benchmarks.writer --gb 4 --steps 10 --sites 30 --repeats 1 --scratch /tmp --forward-ms 620 \
      --modes thread,thread@0,inline
  # probes against scikit-learn on 16 processes, the tighter Newton finish, and where our time goes
  run probe_parity.txt python3 -m benchmarks.probe_parity --device cuda --sklearn-jobs 16 --mazes 64 --newton-tol 1e-5 \
      --profile 25
  # capture of every block's stream at 10 steps against its floor
  run bench.txt python3 -m interp.cli bench --config wan1.3b --device cuda --steps 10 --repeats 2 --only sampling \
      --capture-dtype float16,float8_e4m3:token --scratch /tmp --out "$D/bench.json"
  echo ALLDONE >> "$D/log"
)
