#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run):
#   1. the full build (CUDA and NCCL when the toolkit is found): unit, multi-rank (mpirun at
#      1, 2, 3, 4, 5, 8 ranks), fault, GPU (skip without a GPU) and install tests;
#   2. a CPU-only build (no CUDA, no NCCL) under AddressSanitizer and UBSan: the same tests;
#   3. a fault-tolerant build against Open MPI 5 with ULFM (scripts/setup.sh installs it;
#      CPU-only, only the targets its tests need): the shrink-on-failure tests;
#   4. the codec decoders' fuzz targets for a bounded time, under ASan.
# Exits non-zero on any failure; prints ctest's summaries.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh" || exit 1
status=0
step() { echo; echo "=== $* ==="; }

step "full build (CUDA/NCCL: AUTO)"
if "$root/scripts/build.sh" "$root/build-test" -DGRADWIRE_BUILD_TESTS=ON -DGRADWIRE_BUILD_BENCH=ON; then
  (cd "$root/build-test" && ctest -j2 --output-on-failure --timeout 900) || status=1
else
  status=1
fi

step "CPU-only build under AddressSanitizer + UndefinedBehaviorSanitizer"
if "$root/scripts/build.sh" "$root/build-asan" -DGRADWIRE_CUDA=OFF -DGRADWIRE_NCCL=OFF \
     -DGRADWIRE_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=RelWithDebInfo \
     -DGRADWIRE_BUILD_TESTS=ON -DGRADWIRE_BUILD_BENCH=OFF; then
  # (LeakSanitizer stays on for single-process tests; tests/CMakeLists.txt says why it
  # is off under mpirun.)
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  (cd "$root/build-asan" && ctest -j2 --output-on-failure --timeout 900) || status=1
  unset ASAN_OPTIONS UBSAN_OPTIONS
else
  status=1
fi

step "fault-tolerant build against Open MPI 5 (ULFM): shrink on a lost rank"
ompi5=${GRADWIRE_OMPI5:-/opt/gradwire-ompi5}
if cmake -S "$root" -B "$root/build-ft" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMPI_HOME="$ompi5" \
     -DGRADWIRE_ULFM=ON -DGRADWIRE_CUDA=OFF -DGRADWIRE_NCCL=OFF -DGRADWIRE_BUILD_TESTS=ON \
     -DGRADWIRE_BUILD_BENCH=OFF >"$root/build-ft.configure.log" 2>&1 &&
   cmake --build "$root/build-ft" -j "$(nproc)" --target gw_ft_probe gw_fault_probe gw_respawn_probe; then
  (cd "$root/build-ft" && ctest -L ulfm --output-on-failure --timeout 120) || status=1
else
  cat "$root/build-ft.configure.log"
  status=1
fi

if [ -x "$root/scripts/run_fuzz.sh" ]; then
  step "fuzz the decoders (bounded time, ASan)"
  # 10 s a target (11 targets): keeps the whole suite well under 20 minutes on 2 cores.
  "$root/scripts/run_fuzz.sh" 10 || status=1
fi

echo
[ $status -eq 0 ] && echo "test.sh: all suites passed" || echo "test.sh: FAILED (see above)"
exit $status
