#!/usr/bin/env bash
# Builds the codec decoders' libFuzzer targets with clang (fuzzer + ASan + UBSan) and runs
# each for a bounded time from a generated seed corpus, JOBS targets at a time (default: the
# machine's cores; each target is one process, so each still gets its seconds of one core).
# Exit status non-zero on any crash.
#   scripts/run_fuzz.sh [seconds-per-target=20] [build-dir=build-fuzz]
set -euo pipefail
secs=${1:-20}
root=$(cd "$(dirname "$0")/.." && pwd)
build=${2:-$root/build-fuzz}
jobs=${JOBS:-$(nproc)}
. "$root/scripts/compiler_cache.sh"
san="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "${gw_launchers[@]}" \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_CXX_FLAGS="$san" -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DGRADWIRE_FUZZ=ON -DGRADWIRE_MPI=OFF -DGRADWIRE_CUDA=OFF \
  -DGRADWIRE_BUILD_TESTS=OFF -DGRADWIRE_BUILD_BENCH=OFF >/dev/null
ninja -C "$build" -j "$jobs" $(sed 's/|.*//; s/^/gw_fuzz_/' "$build/fuzz/targets.txt") gw_fuzz_seeds
cd "$build/fuzz"

# fuzz_one NAME SPEC: one target's run; its summary (or its failure) in NAME.out.
fuzz_one() {
  local name=$1 spec=$2
  ./gw_fuzz_seeds "$name" "$spec"
  mkdir -p "work/$name"
  if ! ./gw_fuzz_"$name" -max_total_time="$secs" -max_len=4096 -print_final_stats=1 \
       "work/$name" "corpus/$name" 2>"$name.log"; then
    { echo "FAIL: $name; see $build/fuzz/$name.log"; tail -30 "$name.log"; } >"$name.out"
    return 1
  fi
  { echo -n "== $name ($spec): ${secs}s: "
    grep -E "stat::number_of_executed_units|Done" "$name.log" | tr '\n' ' '; echo; } >"$name.out"
}

status=0
running=0
names=()
while IFS='|' read -r name spec; do
  [ -n "$name" ] || continue
  names+=("$name")
  rm -f "$name.out"
  fuzz_one "$name" "$spec" &
  running=$((running + 1))
  if [ $running -ge "$jobs" ]; then
    wait -n || status=1
    running=$((running - 1))
  fi
done < targets.txt
while [ $running -gt 0 ]; do
  wait -n || status=1
  running=$((running - 1))
done
for name in "${names[@]}"; do cat "$name.out" 2>/dev/null || echo "FAIL: $name: no result"; done
exit $status
