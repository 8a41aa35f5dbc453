#!/usr/bin/env bash
# Runs gw_timeline_probe MODE at NP ranks with a timeline, then check_timeline.py on it.
# Usage: run_timeline.sh MPIRUN PROBE MODE NP [PROBE_ARG] [MAX_BYTES]
set -u
mpirun=$1 probe=$2 mode=$3 np=$4 arg=${5:-} max_bytes=${6:-}
here=$(cd "$(dirname "$0")" && pwd)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
dir=$(mktemp -d)
start=$(date +%s)
trap 'rm -rf "$dir"' EXIT
path=$dir/trace.json
# shellcheck disable=SC2086
# 10^5 runs (mode many) take ~10 s alone but minutes on a loaded, oversubscribed machine.
timeout -k 5 800 "$mpirun" --oversubscribe -np "$np" "$probe" "$mode" "$path" $arg
rc=$?
if [ "$mode" = timeout ]; then
  [ "$rc" -ne 0 ] || { echo "FAIL: the job exited 0 although rank 1 stalled"; exit 1; }
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then echo "FAIL: the job hung"; exit 1; fi
else
  [ "$rc" -eq 0 ] || { echo "FAIL: the job exited $rc"; exit 1; }
fi
if [ "$mode" = late-close ]; then
  # Rank 0 gives up on rank 1 after GRADWIRE_TIMEOUT (2 s); rank 1 comes 5 s in: the job
  # takes about that, not the 60 s cap or forever.
  elapsed=$(( $(date +%s) - start ))
  echo "late-close: the job took ${elapsed} s"
  [ "$elapsed" -le 40 ] || { echo "FAIL: ${elapsed} s: the merge waited too long for the late rank"; exit 1; }
fi
# shellcheck disable=SC2086  # max_bytes: empty or one number
python3 "$here/check_timeline.py" "$mode" "$path" "$np" $max_bytes || exit 1
if [ "$mode" = stall ]; then
  # The summary names rank 1 as the last to arrive in the calls it was late for.
  python3 "$here/../../scripts/timeline_summary.py" "$path" --calls 2 | tee "$dir/summary.txt"
  grep -Eq "^  (allreduce|run allreduce sra).* +[0-9]+ +1 +[0-9.]+" "$dir/summary.txt" ||
    { echo "FAIL: the summary does not name rank 1 as the one waited for"; exit 1; }
  echo "PASS (summary)"
fi
