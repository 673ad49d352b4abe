#!/usr/bin/env bash
# Issue 24's GPU measurements after the probes' float64 Newton finish, and the writer at the capture's size, one
# after another in the background (no two timed runs overlap).
# Usage on the GPU machine, from the repo root, with the wheels carried in .whl: bash experiments/bench/gpu_hold4.sh DIR
# then poll: sleep 300; tail DIR/log (ALLDONE at the end); copy DIR/*.json DIR/*.txt DIR/log into $OUT.
set -u
# the device's run ends by killing its session: detach into a new one first
[ -n "${_DETACHED:-}" ] || { _DETACHED=1 setsid bash "$0" "$@" < /dev/null > /dev/null 2>&1 & echo started; exit 0; }
D=${1:-/tmp/hold4}; mkdir -p "$D"
. experiments/bench/gpu_env.sh || exit 1
run() { local f=$1; shift; echo "=== $(date +%T) $*" >> "$D/log"; "$@" > "$D/$f" 2>&1; echo "=== $(date +%T) rc=$?" >> "$D/log"; }
(
  # probes against scikit-learn on 16 processes at the defaults (+ the Newton finish in float64 on CUDA)
  run probe_parity.txt python3 -m benchmarks.probe_parity --device cuda --sklearn-jobs 16 --mazes 64
  # the store's writer alone (no forward) with as many bytes as the 10-step capture, against one plain thread
  run writer29.txt python3 -m benchmarks.writer --gb 29 --steps 10 --sites 30 --repeats 1 --scratch /tmp \
      --modes thread,inline
  echo ALLDONE >> "$D/log"
)
