#!/usr/bin/env bash
# Runs gw_respawn_probe under mpirun --with-ft ulfm and checks the outcome on every rank.
#   respawn MODE:        4 ranks, rank 2 killed in call 7 of 20; the 3 survivors respawn a
#                        replacement; all 4 finish on 4 ranks with correct results.
#   joiner-killed MODE:  the same, but the replacement dies before it joins; the 3 survivors
#                        finish on 3 ranks, every one of them (the same view), in bounded time.
#   grow MODE:           2 ranks, grow(2) at call 5 of 12; all 4 finish on 4 ranks.
# Usage: run_respawn.sh MPIRUN PROBE SCENARIO MODE
set -u
mpirun=$1 probe=$2 scenario=$3 mode=$4
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# docs/fault-tolerance.md: Open MPI 5.0's finalize fence (ompi#9434) and the han collectives'
# merge deadlock after a second shrink (ompi#11724).
export OMPI_MCA_async_mpi_finalize=1 OMPI_MCA_coll=^han
export GRADWIRE_TIMEOUT=${GRADWIRE_TIMEOUT:-20} GRADWIRE_INIT_TIMEOUT=${GRADWIRE_INIT_TIMEOUT:-8}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
np=4 args=("$mode" 20 "$dir")
case $scenario in
  respawn) export GW_TEST_KILL_RANK=2 GW_TEST_KILL_CALL=7 ;;
  joiner-killed) export GW_TEST_KILL_RANK=2 GW_TEST_KILL_CALL=7; touch "$dir/kill_joiner" ;;
  grow) np=2 args=("$mode" 12 "$dir" 5 2) ;;
  *) echo "unknown scenario $scenario"; exit 2 ;;
esac
start=$(date +%s)
timeout -k 5 75 "$mpirun" --with-ft ulfm --oversubscribe -np $np \
  -x GW_TEST_KILL_RANK -x GW_TEST_KILL_CALL -x GRADWIRE_TIMEOUT \
  -x GRADWIRE_INIT_TIMEOUT "$probe" "${args[@]}" >"$dir/log" 2>&1
rc=$?
elapsed=$(( $(date +%s) - start ))
cat "$dir/log"
echo "scenario '$scenario' '$mode': mpirun exit $rc after ${elapsed}s"
# (mpirun exits 137 when a spawned process was SIGKILLed: the time tells a hang.)
[ "$elapsed" -lt 75 ] || { echo "FAIL: the job hung until killed"; exit 1; }
grep -q "^FAIL" "$dir/log" && { echo "FAIL: a rank reported a failure"; exit 1; }
count() { grep -c "$1" "$dir/log"; }
case $scenario in
  respawn)
    s=$(count "^PASS rank [013] id [013] mode=$mode joiner=0 size 4->4 changes=1 ")
    j=$(count "^PASS rank 2 id 2 mode=$mode joiner=1 size -1->4 ")
    [ "$s" -eq 3 ] && [ "$j" -eq 1 ] || { echo "FAIL: $s of 3 survivors and $j of 1 replacement finished on 4 ranks"; exit 1; } ;;
  joiner-killed)
    s=$(count "^PASS rank [012] id [013] mode=$mode joiner=0 size 4->3 changes=1 ")
    [ "$s" -eq 3 ] || { echo "FAIL: $s of 3 survivors finished on 3 ranks"; exit 1; }
    grep -q "abandoned on every rank" "$dir/log" || { echo "FAIL: no word of the abandoned join"; exit 1; } ;;
  grow)
    s=$(count "^PASS rank [01] id [01] mode=$mode joiner=0 size 2->4 changes=1 ")
    j=$(count "^PASS rank [23] id [23] mode=$mode joiner=1 size -1->4 ")
    [ "$s" -eq 2 ] && [ "$j" -eq 2 ] || { echo "FAIL: $s of 2 members and $j of 2 joiners finished on 4 ranks"; exit 1; } ;;
esac
echo "PASS"
