#!/usr/bin/env bash
# Runs gw_ft_probe MODE at 4 ranks under mpirun --with-ft ulfm with world rank 2 killed in
# call 7, then checks: the 3 survivors each print PASS (correct results on 3 ranks after the
# shrink), each was told that rank 2 was lost, within 1 s of the kill, and nothing hung.
# Usage: run_shrink.sh MPIRUN PROBE MODE
set -u
mpirun=$1 probe=$2 mode=$3
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Open MPI 5.0.x: the PMIx fence in MPI_Finalize can wait forever for a dead process
# (open-mpi/ompi#9434, #11404); the survivors skip it.
export OMPI_MCA_async_mpi_finalize=1
# A stalled survivor would end the job at this deadline rather than hang the test.
export GRADWIRE_TIMEOUT=${GRADWIRE_TIMEOUT:-20}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
start=$(date +%s)
GW_TEST_KILL_RANK=2 GW_TEST_KILL_CALL=${GW_TEST_KILL_CALL:-7} \
  timeout -k 5 50 "$mpirun" --with-ft ulfm --oversubscribe -np 4 \
  -x GW_TEST_KILL_RANK -x GW_TEST_KILL_CALL -x GRADWIRE_TIMEOUT \
  "$probe" "$mode" 20 "$dir" >"$dir/log" 2>&1
rc=$?
elapsed=$(( $(date +%s) - start ))
cat "$dir/log"
echo "shrink scenario '$mode': mpirun exit $rc after ${elapsed}s"
[ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] || { echo "FAIL: the job hung until killed"; exit 1; }
grep -q "^FAIL" "$dir/log" && { echo "FAIL: a survivor reported a failure"; exit 1; }
pass=$(grep -c "^PASS rank [013] mode=$mode size 4->3 shrinks=1 .*lost='.*peer failed: 1 rank(s) lost: ranks 2 " "$dir/log")
[ "$pass" -eq 3 ] || { echo "FAIL: $pass of 3 survivors finished on 3 ranks naming rank 2"; exit 1; }
slow=$(grep -o "detect_ms=[0-9.-]*" "$dir/log" | awk -F= '$2 < 0 || $2 > 1000' | wc -l)
[ "$slow" -eq 0 ] || { echo "FAIL: $slow survivor(s) learned of the failure after more than 1 s"; exit 1; }
echo "PASS"
