#!/usr/bin/env bash
# The test suite, in two tiers (README.md says which to run when):
#
#   scripts/test.sh --quick   the inner loop of a change, under 2 minutes on a built tree: the
#                             host build (build-cpu, CPU only), its unit and loopback tiers and
#                             the mpirun suite at 2 and 3 ranks (ctest labels unit, loopback
#                             and quick; tests/CMakeLists.txt says which test has which).
#   scripts/test.sh           everything, as CI runs it (.ci/run):
#     1. the full build (CUDA and NCCL when the toolkit is found): unit, loopback, multi-rank
#        (mpirun at 1, 2, 3, 4, 5, 8 ranks), fault, GPU (skip without a GPU), benchmark smoke,
#        install and example tests;
#     2. a CPU-only build under AddressSanitizer + UBSan: the same tests but those labelled
#        `full-build-only` (tests/CMakeLists.txt says which and why: each runs once);
#     3. a fault-tolerant build against Open MPI 5 with ULFM (scripts/setup.sh installs it;
#        CPU-only, only the targets its tests need): shrink, respawn and grow with a rank
#        killed, and test_on_failure.cpp's ULFM cases (gw_ulfm_tests);
#     4. the codec decoders' fuzz targets for a bounded time, under ASan (clang);
#     5. the Python tier (scripts/test_python.sh).
#
# Every build compiles through ccache (scripts/compiler_cache.sh). Exits non-zero on any
# failure; prints ctest's summaries and, at the end, the time each stage took.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
quick=0
case "${1:-}" in
  --quick) quick=1 ;;
  "") ;;
  *) echo "usage: scripts/test.sh [--quick]" >&2; exit 2 ;;
esac
"$root/scripts/setup.sh" || exit 1
. "$root/scripts/compiler_cache.sh"  # nested configures (install checks, examples) use it too
status=0
times=()
step() { echo; echo "=== $* ==="; }
# CPU seconds (user + system) of the finished children so far: on a shared machine a stage's
# CPU time says more than its wall time about what it costs.
# (Fields 16 and 17 of /proc/PID/stat, in clock ticks; $$ is this shell even in a subshell.)
tick=$(getconf CLK_TCK)
child_cpu() { awk -v t="$tick" '{ printf "%d", ($16 + $17) / t }' "/proc/$$/stat"; }
# timed LABEL CMD...: runs CMD, records its wall and CPU time under LABEL for the summary.
timed() {
  local label=$1 t0=$SECONDS c0 rc=0
  c0=$(child_cpu)
  shift
  "$@" || rc=$?
  times+=("$(printf '%-24s %6d s %8d s' "$label" $((SECONDS - t0)) $(($(child_cpu) - c0)))")
  return $rc
}
summary() {
  echo
  echo "=== time per stage (load now: $(cut -d' ' -f1-3 /proc/loadavg)) ==="
  printf '%-24s %8s %10s\n' stage wall cpu
  printf '%s\n' "${times[@]}"
  printf '%-24s %6d s %8d s\n' "total" "$SECONDS" "$(child_cpu)"
  echo
  [ $status -eq 0 ] && echo "test.sh: all suites passed" || echo "test.sh: FAILED (see above)"
}
ctest_in() { (cd "$1" && shift && ctest -j2 --output-on-failure "$@"); }

if [ $quick -eq 1 ]; then
  # The same configuration as a developer's build-cpu, so that switching between this and a
  # hand-built tree never reconfigures; only the three test binaries are built.
  step "quick: host build (build-cpu): unit, loopback, mpirun at 2 and 3 ranks"
  if timed "quick: build" "$root/scripts/build.sh" "$root/build-cpu" -DGRADWIRE_CUDA=OFF \
       -DGRADWIRE_NCCL=OFF -DGRADWIRE_BUILD_TESTS=ON -DGRADWIRE_BUILD_BENCH=ON \
       -- gw_unit_tests gw_loopback_tests gw_mpi_tests; then
    timed "quick: tests" ctest_in "$root/build-cpu" -L '^(unit|loopback|quick)$' --timeout 300 || status=1
  else
    status=1
  fi
  summary
  exit $status
fi

step "full build (CUDA/NCCL: AUTO)"
if timed "full: build" "$root/scripts/build.sh" "$root/build-test" -DGRADWIRE_BUILD_TESTS=ON \
     -DGRADWIRE_BUILD_BENCH=ON; then
  timed "full: tests" ctest_in "$root/build-test" --timeout 900 || status=1
else
  status=1
fi

step "CPU-only build under AddressSanitizer + UndefinedBehaviorSanitizer"
if timed "asan: build" "$root/scripts/build.sh" "$root/build-asan" -DGRADWIRE_CUDA=OFF \
     -DGRADWIRE_NCCL=OFF -DGRADWIRE_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=RelWithDebInfo \
     -DGRADWIRE_BUILD_TESTS=ON -DGRADWIRE_BUILD_BENCH=OFF; then
  # (LeakSanitizer stays on for single-process tests; tests/CMakeLists.txt says why it
  # is off under mpirun.)
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  timed "asan: tests" ctest_in "$root/build-asan" -LE full-build-only --timeout 900 || status=1
  unset ASAN_OPTIONS UBSAN_OPTIONS
else
  status=1
fi

step "fault-tolerant build against Open MPI 5 (ULFM): shrink on a lost rank"
ompi5=${GRADWIRE_OMPI5:-/opt/gradwire-ompi5}
if timed "ulfm: build" "$root/scripts/build.sh" "$root/build-ft" -DMPI_HOME="$ompi5" \
     -DGRADWIRE_ULFM=ON -DGRADWIRE_CUDA=OFF -DGRADWIRE_NCCL=OFF -DGRADWIRE_BUILD_TESTS=ON \
     -DGRADWIRE_BUILD_BENCH=OFF -- gw_ft_probe gw_fault_probe gw_respawn_probe gw_ulfm_tests; then
  timed "ulfm: tests" ctest_in "$root/build-ft" -L ulfm --timeout 120 || status=1
else
  status=1
fi

step "fuzz the decoders (bounded time, ASan)"
# 10 s a target (11 targets), as many at a time as there are cores (run_fuzz.sh).
timed "fuzz: build and run" "$root/scripts/run_fuzz.sh" 10 || status=1

step "Python tier (scripts/test_python.sh)"
timed "python" "$root/scripts/test_python.sh" || status=1

summary
exit $status
