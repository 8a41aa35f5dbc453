#!/usr/bin/env bash
# Kill-a-rank campaign for GRADWIRE_ON_FAILURE=shrink (bench/results/fault-tolerance.md).
# TRIALS runs of tests/fault/gw_ft_probe at 4 ranks under mpirun --with-ft ulfm, cycling
# through dense host allreduces, q8 SRA plans and top-k + EF plans; each kills a random rank
# (SIGKILL, from a thread) a random 0-2000 us into a random call 3..30 of a 40-call loop.
# A trial passes when all 3 survivors finish the loop on 3 ranks with correct results, naming
# the killed rank. Prints one line per trial, then the detection times (kill to PeerFailed on
# every survivor): median and maximum.
#
#   bench/fault/ulfm_campaign.sh BUILD_FT_DIR [TRIALS=20] [SEED=1]
set -u
build=$(cd "$1" && pwd)
trials=${2:-20}
RANDOM=${3:-1}
probe=$build/tests/fault/gw_ft_probe
mpirun=$(sed -n 's/^MPIEXEC_EXECUTABLE:FILEPATH=//p' "$build/CMakeCache.txt")
[ -x "$probe" ] || { echo "no $probe: cmake --build $build --target gw_ft_probe"; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 GRADWIRE_TIMEOUT=30
export OMPI_MCA_async_mpi_finalize=1  # docs/fault-tolerance.md: Open MPI's finalize fence
modes=(dense q8 topk)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 hangs=0
: >"$tmp/detect"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')  host: $(nproc) cores  load: $(cut -d' ' -f1-3 /proc/loadavg)"
for ((t = 1; t <= trials; ++t)); do
  mode=${modes[$(( (t - 1) % 3 ))]}
  rank=$((RANDOM % 4)) call=$((3 + RANDOM % 28)) delay=$((RANDOM % 2001))
  dir=$tmp/t$t
  mkdir -p "$dir"
  start=$(date +%s.%N)
  GW_TEST_KILL_RANK=$rank GW_TEST_KILL_CALL=$call GW_TEST_KILL_DELAY_US=$delay \
    timeout -k 5 60 "$mpirun" --with-ft ulfm --oversubscribe -np 4 \
    -x GW_TEST_KILL_RANK -x GW_TEST_KILL_CALL -x GW_TEST_KILL_DELAY_US -x GRADWIRE_TIMEOUT \
    "$probe" "$mode" 40 "$dir" >"$dir/log" 2>&1
  rc=$?
  wall=$(echo "$(date +%s.%N) - $start" | bc)
  [ $rc -eq 124 ] || [ $rc -eq 137 ] && hangs=$((hangs + 1))
  ok=$(grep -c "^PASS rank .* size 4->3 shrinks=1 .*ranks $rank " "$dir/log")
  grep -o "detect_ms=[0-9.]*" "$dir/log" | cut -d= -f2 >>"$tmp/detect"
  d=$(grep -o "detect_ms=[0-9.]*" "$dir/log" | cut -d= -f2 | tr '\n' ' ')
  verdict=FAIL
  [ "$ok" -eq 3 ] && ! grep -q "^FAIL" "$dir/log" && verdict=ok && pass=$((pass + 1))
  printf "trial %2d  %-5s kill rank %d, call %2d + %4d us: %s (%d/3 survivors correct on 3 ranks), detect_ms %s, job %.1f s, rc %d\n" \
    "$t" "$mode" "$rank" "$call" "$delay" "$verdict" "$ok" "$d" "$wall" "$rc"
  [ "$verdict" = ok ] || sed 's/^/    | /' "$dir/log" | head -20
done
sort -n "$tmp/detect" >"$tmp/sorted"
n=$(wc -l <"$tmp/sorted")
median=$(awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }' "$tmp/sorted")
max=$(tail -1 "$tmp/sorted")
echo "summary: $pass/$trials trials passed, $hangs hung; kill -> PeerFailed over $n survivors: median ${median} ms, max ${max} ms"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
[ "$pass" -eq "$trials" ]
