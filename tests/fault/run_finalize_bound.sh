#!/usr/bin/env bash
# gw_finalize_probe at one rank: a finalize that does not return ends the process within the
# bound (1 s; the stand-in hang is 30 s) with status 1 and gradwire's message; one that returns
# is left alone. Usage: run_finalize_bound.sh MPIRUN PROBE
set -u
mpirun=$1 probe=$2
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
start=$(date +%s)
out=$(timeout -k 5 40 "$mpirun" -np 1 "$probe" hang 2>&1)
rc=$?
elapsed=$(( $(date +%s) - start ))
echo "$out"
echo "hang: exit $rc after ${elapsed}s"
if [ "$rc" -eq 0 ] || [ "$elapsed" -ge 20 ] ||
   ! grep -q "MPI_Finalize did not complete within 1 s" <<<"$out"; then
  echo "FAIL: the finalize was not ended by the bound"; exit 1
fi
out=$(timeout -k 5 40 "$mpirun" -np 1 "$probe" return 2>&1)
rc=$?
echo "$out"
echo "return: exit $rc"
if [ "$rc" -ne 0 ] || ! grep -q "^PASS" <<<"$out" || grep -q "did not complete" <<<"$out"; then
  echo "FAIL: a finalize that returned was not left alone"; exit 1
fi
echo PASS
