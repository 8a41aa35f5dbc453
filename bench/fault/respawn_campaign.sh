#!/usr/bin/env bash
# Kill-a-rank campaign for GRADWIRE_ON_FAILURE=respawn (bench/results/fault-tolerance-respawn.md).
# TRIALS runs of tests/fault/gw_respawn_probe at NP ranks under mpirun --with-ft ulfm, cycling
# through dense host allreduces, q8 SRA plans and top-k + EF plans; each kills a random rank
# (SIGKILL, from a thread) a random 0-2000 us into a random call 3..30 of a 40-call loop.
#   SCENARIO respawn: a trial passes when the NP-1 survivors and the replacement all finish on
#     NP ranks with correct results (checked against the exact sums, the top-k residual
#     conserved, the shared state identical). Reports the time from the kill to the first
#     collective completed on the full-size communicator (the slowest survivor of each trial):
#     median and maximum over trials.
#   SCENARIO joiner-killed: every replacement dies right after MPI_Init; a trial passes when
#     the NP-1 survivors all finish on NP-1 ranks (the same view on every one).
#   SCENARIO joiner-killed-in-merge: every replacement dies on entering MPI_Intercomm_merge,
#     after its hand-shake; passes as joiner-killed does.
#   SCENARIO survivor-killed: besides the killed rank, another random rank dies inside
#     respawn() (in the survivors' agreement on the step); passes as respawn does, with two
#     replacements.
# A trial that runs into the 90 s limit is a hang.
#
#   bench/fault/respawn_campaign.sh BUILD_FT_DIR NP [TRIALS=20] [SEED=1] [SCENARIO=respawn]
set -u
build=$(cd "$1" && pwd)
np=$2
trials=${3:-20}
RANDOM=${4:-1}
scenario=${5:-respawn}
probe=$build/tests/fault/gw_respawn_probe
mpirun=$(sed -n 's/^MPIEXEC_EXECUTABLE:FILEPATH=//p' "$build/CMakeCache.txt")
[ -x "$probe" ] || { echo "no $probe: cmake --build $build --target gw_respawn_probe"; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 GRADWIRE_TIMEOUT=30
export GRADWIRE_INIT_TIMEOUT=${GRADWIRE_INIT_TIMEOUT:-5}
# docs/fault-tolerance.md: Open MPI 5.0's finalize fence and han's merge deadlock (ompi#11724).
export OMPI_MCA_async_mpi_finalize=1 OMPI_MCA_coll=^han
modes=(dense q8 topk)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 hangs=0
: >"$tmp/recover"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')  host: $(nproc) cores  load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "scenario: $scenario, $np ranks, $trials trials, seed ${4:-1}, GRADWIRE_INIT_TIMEOUT=$GRADWIRE_INIT_TIMEOUT"
for ((t = 1; t <= trials; ++t)); do
  mode=${modes[$(( (t - 1) % 3 ))]}
  rank=$((RANDOM % np)) call=$((3 + RANDOM % 28)) delay=$((RANDOM % 2001))
  dir=$tmp/t$t
  mkdir -p "$dir"
  case $scenario in
    joiner-killed) touch "$dir/kill_joiner" ;;
    joiner-killed-in-merge) touch "$dir/kill_joiner_in_merge" ;;
    survivor-killed) echo "$(( (rank + 1 + RANDOM % (np - 1)) % np )) step" >"$dir/kill_survivor" ;;
  esac
  start=$(date +%s.%N)
  GW_TEST_KILL_RANK=$rank GW_TEST_KILL_CALL=$call GW_TEST_KILL_DELAY_US=$delay \
    timeout -k 5 90 "$mpirun" --with-ft ulfm --oversubscribe -np "$np" \
    -x GW_TEST_KILL_RANK -x GW_TEST_KILL_CALL -x GW_TEST_KILL_DELAY_US -x GRADWIRE_TIMEOUT \
    -x GRADWIRE_INIT_TIMEOUT "$probe" "$mode" 40 "$dir" >"$dir/log" 2>&1
  rc=$?
  wall=$(echo "$(date +%s.%N) - $start" | bc)
  hung=0
  [ "$(echo "$wall >= 90" | bc)" -eq 1 ] && hung=1 && hangs=$((hangs + 1))
  if [ "$scenario" = respawn ] || [ "$scenario" = survivor-killed ]; then
    ok=$(grep -ac -e "^PASS .* joiner=0 size $np->$np changes=1 " -e "^PASS .* joiner=1 size -1->$np " "$dir/log")
    want=$np
    r=$(grep -a "joiner=0" "$dir/log" | grep -o "recover_ms=[0-9.]*" | cut -d= -f2 | sort -n | tail -1)
    [ -n "$r" ] && echo "$r" >>"$tmp/recover"
  else
    ok=$(grep -ac "^PASS .* joiner=0 size $np->$((np - 1)) changes=1 " "$dir/log")
    want=$((np - 1))
    r="-"
  fi
  verdict=FAIL
  [ "$ok" -eq "$want" ] && [ "$hung" -eq 0 ] && ! grep -aq "^FAIL" "$dir/log" && verdict=ok && pass=$((pass + 1))
  printf "trial %2d  %-5s kill rank %d, call %2d + %4d us: %s (%d/%d ranks correct at the expected size), recover_ms %s, job %.1f s, rc %d\n" \
    "$t" "$mode" "$rank" "$call" "$delay" "$verdict" "$ok" "$want" "${r:-none}" "$wall" "$rc"
  [ -f "$dir/kill_survivor" ] && printf "          and rank %s inside respawn()\n" "$(cut -d' ' -f1 "$dir/kill_survivor")"
  [ "$verdict" = ok ] || grep -av -e "^PASS" -e "^NBC_Progress" "$dir/log" | sed 's/^/    | /' | head -20
  [ "$verdict" = ok ] && rm -rf "$dir"  # (an abandoned merge leaves megabytes of NBC_Progress lines)
done
summary="summary: $scenario at $np ranks: $pass/$trials trials passed, $hangs hung"
if [ -s "$tmp/recover" ]; then
  sort -n "$tmp/recover" >"$tmp/sorted"
  n=$(wc -l <"$tmp/sorted")
  median=$(awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }' "$tmp/sorted")
  summary="$summary; kill -> first full-size collective over $n trials: median ${median} ms, max $(tail -1 "$tmp/sorted") ms"
fi
echo "$summary"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
[ "$pass" -eq "$trials" ]
