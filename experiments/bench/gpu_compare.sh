#!/usr/bin/env bash
# interp compare of the organism's tasks beside the three maze models (issue 19), in the background; poll
# `tail DIR/log` until ALLDONE, then copy DIR/res.tgz into $OUT.
# Usage on the GPU machine, from the repo root, with the wheels carried in .whl: bash experiments/bench/gpu_compare.sh DIR
set -u
# the device's run ends by killing its session: detach into a new one first
[ -n "${_DETACHED:-}" ] || { _DETACHED=1 setsid bash "$0" "$@" < /dev/null > /dev/null 2>&1 & echo started; exit 0; }
D=${1:-/tmp/cmp}; mkdir -p "$D"
. experiments/bench/gpu_env.sh || exit 1
(
  echo "=== $(date +%T) start" >> "$D/log"
  python3 -m interp.cli compare organism maze-wan maze-cogvideox maze-lm --size 5 --n 64 --steps 20 --device cuda \
    --out "$D/compare-tasks" >> "$D/log" 2>&1
  echo "=== $(date +%T) rc=$?" >> "$D/log"
  tar czf "$D/res.tgz" -C "$D" compare-tasks log
  echo ALLDONE >> "$D/log"
)
