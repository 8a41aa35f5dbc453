#!/usr/bin/env bash
# Builds the codec decoders' libFuzzer targets with clang (fuzzer + ASan + UBSan) and runs
# each for a bounded time from a generated seed corpus. Exit status non-zero on any crash.
#   scripts/run_fuzz.sh [seconds-per-target=20] [build-dir=build-fuzz]
set -euo pipefail
secs=${1:-20}
root=$(cd "$(dirname "$0")/.." && pwd)
build=${2:-$root/build-fuzz}
san="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_CXX_FLAGS="$san" -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DGRADWIRE_FUZZ=ON -DGRADWIRE_MPI=OFF -DGRADWIRE_CUDA=OFF \
  -DGRADWIRE_BUILD_TESTS=OFF -DGRADWIRE_BUILD_BENCH=OFF >/dev/null
ninja -C "$build" -j "${JOBS:-2}" $(sed 's/|.*//; s/^/gw_fuzz_/' "$build/fuzz/targets.txt") gw_fuzz_seeds
cd "$build/fuzz"
status=0
while IFS='|' read -r name spec; do
  [ -n "$name" ] || continue
  ./gw_fuzz_seeds "$name" "$spec"
  mkdir -p "work/$name"
  echo "== $name ($spec): ${secs}s"
  if ! ./gw_fuzz_"$name" -max_total_time="$secs" -max_len=4096 -print_final_stats=1 \
       "work/$name" "corpus/$name" 2>"$name.log"; then
    echo "FAIL: $name; see $build/fuzz/$name.log"; tail -30 "$name.log"; status=1
  else
    grep -E "stat::number_of_executed_units|Done" "$name.log" | tr '\n' ' '; echo
  fi
done < targets.txt
exit $status
