#!/usr/bin/env bash
# Runs gw_respawn_probe under mpirun --with-ft ulfm and checks the outcome on every rank.
#   respawn MODE:        4 ranks, rank 2 killed in call 7 of 20; the 3 survivors respawn a
#                        replacement; all 4 finish on 4 ranks with correct results.
#   joiner-killed MODE:  the same, but the replacement dies before it joins; the 3 survivors
#                        finish on 3 ranks, every one of them (the same view), in bounded time.
#   joiner-killed-in-merge MODE: the replacement dies inside MPI_Intercomm_merge, after its
#                        hand-shake; the 3 survivors abandon the merge at GRADWIRE_INIT_TIMEOUT,
#                        agree, and finish on 3 ranks, every one of them.
#   survivor-killed MODE: rank 3 dies inside respawn() (in the survivors' agreement on the
#                        step); the other 2 agree on the second loss, respawn both lost ranks
#                        and all 4 finish on 4 ranks.
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
  joiner-killed-in-merge)
    export GW_TEST_KILL_RANK=2 GW_TEST_KILL_CALL=7; touch "$dir/kill_joiner_in_merge" ;;
  survivor-killed)
    export GW_TEST_KILL_RANK=2 GW_TEST_KILL_CALL=7; echo "3 step" >"$dir/kill_survivor" ;;
  grow) np=2 args=("$mode" 12 "$dir" 5 2) ;;
  *) echo "unknown scenario $scenario"; exit 2 ;;
esac
# The job's bound. Once a merge was abandoned, a survivor's MPI_Finalize can crash in Open MPI
# after its work is done, or not return: gradwire then ends it at GRADWIRE_INIT_TIMEOUT
# (src/fault/finalize_bound.hpp), so every scenario's processes exit within the bound.
limit=75
start=$(date +%s)
timeout -k 5 $limit "$mpirun" --with-ft ulfm --oversubscribe -np $np \
  -x GW_TEST_KILL_RANK -x GW_TEST_KILL_CALL -x GRADWIRE_TIMEOUT \
  -x GRADWIRE_INIT_TIMEOUT "$probe" "${args[@]}" >"$dir/log" 2>&1
rc=$?
elapsed=$(( $(date +%s) - start ))
# An abandoned merge's thread makes Open MPI's libnbc print this line on every retry (docs/
# fault-tolerance.md): counted, not shown.
grep -av "^NBC_Progress: an error" "$dir/log" | grep -av '^$'
echo "($(grep -ac "^NBC_Progress: an error" "$dir/log") lines 'NBC_Progress: an error ...' left out)"
echo "scenario '$scenario' '$mode': mpirun exit $rc after ${elapsed}s"
# (mpirun exits 137 when a spawned process was SIGKILLed: the time tells a hang.)
if [ "$elapsed" -ge $limit ]; then
  echo "FAIL: the job hung until killed"; exit 1
fi
grep -aq "^FAIL" "$dir/log" && { echo "FAIL: a rank reported a failure"; exit 1; }
count() { grep -ac "$1" "$dir/log"; }
case $scenario in
  respawn)
    s=$(count "^PASS rank [013] id [013] mode=$mode joiner=0 size 4->4 changes=1 ")
    j=$(count "^PASS rank 2 id 2 mode=$mode joiner=1 size -1->4 ")
    [ "$s" -eq 3 ] && [ "$j" -eq 1 ] || { echo "FAIL: $s of 3 survivors and $j of 1 replacement finished on 4 ranks"; exit 1; } ;;
  joiner-killed)
    s=$(count "^PASS rank [012] id [013] mode=$mode joiner=0 size 4->3 changes=1 ")
    [ "$s" -eq 3 ] || { echo "FAIL: $s of 3 survivors finished on 3 ranks"; exit 1; }
    grep -aq "abandoned on every rank" "$dir/log" || { echo "FAIL: no word of the abandoned join"; exit 1; } ;;
  joiner-killed-in-merge)
    s=$(count "^PASS rank [012] id [013] mode=$mode joiner=0 size 4->3 changes=1 ")
    [ "$s" -eq 3 ] || { echo "FAIL: $s of 3 survivors finished on 3 ranks"; exit 1; }
    grep -aq "abandoned on every rank (MPI_Intercomm_merge did not complete" "$dir/log" ||
      { echo "FAIL: no word of the abandoned merge"; exit 1; } ;;
  survivor-killed)
    s=$(count "^PASS rank [01] id [01] mode=$mode joiner=0 size 4->4 changes=1 ")
    j=$(count "^PASS rank [23] id [23] mode=$mode joiner=1 size -1->4 ")
    [ "$s" -eq 2 ] && [ "$j" -eq 2 ] || { echo "FAIL: $s of 2 survivors and $j of 2 replacements finished on 4 ranks"; exit 1; } ;;
  grow)
    s=$(count "^PASS rank [01] id [01] mode=$mode joiner=0 size 2->4 changes=1 ")
    j=$(count "^PASS rank [23] id [23] mode=$mode joiner=1 size -1->4 ")
    [ "$s" -eq 2 ] && [ "$j" -eq 2 ] || { echo "FAIL: $s of 2 members and $j of 2 joiners finished on 4 ranks"; exit 1; } ;;
esac
echo "PASS"
