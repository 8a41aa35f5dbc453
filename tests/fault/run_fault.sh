#!/usr/bin/env bash
# Runs gw_fault_probe SCENARIO under mpirun and checks that the job ends non-zero, within
# MAX_SECONDS, with output matching EXPECTED (an extended regex).
# Usage: run_fault.sh MPIRUN PROBE SCENARIO EXPECTED MAX_SECONDS
set -u
mpirun=$1 probe=$2 scenario=$3 expected=$4 max_s=$5
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export GRADWIRE_TIMEOUT=${GRADWIRE_TIMEOUT:-2} GRADWIRE_INIT_TIMEOUT=${GRADWIRE_INIT_TIMEOUT:-2}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
start=$(date +%s)
# The outer timeout only guards this script: the job must end well before it.
# GW_MPIRUN_FLAGS: extra mpirun flags (the ULFM variant passes --with-ft ulfm).
# shellcheck disable=SC2086
timeout -k 5 $((max_s * 3)) "$mpirun" ${GW_MPIRUN_FLAGS:-} --oversubscribe -np 3 "$probe" "$scenario" >"$log" 2>&1
rc=$?
elapsed=$(( $(date +%s) - start ))
cat "$log"
echo "fault scenario '$scenario': exit $rc after ${elapsed}s (limit ${max_s}s)"
[ "$rc" -ne 0 ] || { echo "FAIL: the job exited 0"; exit 1; }
[ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] || { echo "FAIL: the job hung until killed"; exit 1; }
[ "$elapsed" -le "$max_s" ] || { echo "FAIL: took ${elapsed}s, more than ${max_s}s"; exit 1; }
grep -Eq "$expected" "$log" || { echo "FAIL: output does not match /$expected/"; exit 1; }
echo "PASS"
