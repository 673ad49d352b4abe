#!/usr/bin/env bash
# Runs a list of GPU measurements one after another in the background (no two timed runs overlap), detached from
# the device's run (which ends by killing its session).
# Usage on the GPU machine, from the repo root, with the wheels carried in .whl:
#     bash experiments/bench/gpu_hold.sh DIR experiments/bench/jobs/NAME.sh
# then poll: sleep 300; tail DIR/log (ALLDONE at the end); copy DIR/* into $OUT.
# A jobs file is bash run with D (the output folder) set; each measurement is one line `run FILE command...`:
# its output goes to DIR/FILE and its start, end and exit status to DIR/log.
set -u
[ -n "${_DETACHED:-}" ] || { _DETACHED=1 setsid bash "$0" "$@" < /dev/null > /dev/null 2>&1 & echo started; exit 0; }
D=${1:?output folder}; JOBS=${2:?jobs file}; mkdir -p "$D"
. experiments/bench/gpu_env.sh || exit 1
run() { local f=$1; shift; echo "=== $(date +%T) $*" >> "$D/log"; "$@" > "$D/$f" 2>&1; echo "=== $(date +%T) rc=$?" >> "$D/log"; }
. "$JOBS"
echo ALLDONE >> "$D/log"
