#!/usr/bin/env bash
# The GPU check: everything GPU-facing, on a machine with an NVIDIA GPU.
#   1. configure gradwire with CUDA + NCCL + MPI (MPI_HOME, NCCL_ROOT from the environment) and
#      build the targets below, or reuse a build already configured so (the one
#      ../shared/gpu/remote.sh makes in ${TMPDIR:-/tmp}/gwgpu, or GW_GPU_BUILD / $1);
#   2. gw_gpu_tests (the CUDA codec kernels against the host codec), then the codec benchmark
#      gw_codec_bench_gpu and bench/gpu/torch_peers.py (bench/results/codec-gpu.md, "To run");
#   3. gw_mpi_tests at 1 rank: everything passes and no device test skips (device plans on
#      the GPU over NCCL give the host plans' bits: PlanDeviceGpu);
#   4. gw_mpi_tests at 2 ranks on one GPU (CUDA_VISIBLE_DEVICES=first GPU): host tests pass,
#      dense device tests skip saying why, the shared-GPU error test runs, and device plans
#      (the staged-compressed transport) give the host plans' bits; the device plans again
#      at 4 ranks on that GPU; device powersgd plans (no NCCL) run on the shared GPU;
#   5. a short `gw_allreduce -d cuda -c` sweep at 1 rank (and at 2 ranks with two GPUs).
# Prints a summary (also written to GW_GPU_CHECK_SUMMARY, default BUILD/gpu-check-summary.md).
# Exit status: 0 all passed; 1 a check failed; 2 no GPU on this machine; 3 configure or build
# failed.
#   scripts/gpu_check.sh [BUILD_DIR]
#   bash .gpu/remote.sh scripts/gpu_check.sh      (on a lent GPU machine, after prepare.sh)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd -P)

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
  echo "gpu_check: no NVIDIA GPU here (nvidia-smi is missing or lists none), so there is nothing" >&2
  echo "gpu_check: to check; run it on a machine with a GPU (README.md, 'GPU check'). Exit 2." >&2
  exit 2
fi
gpus=$(nvidia-smi -L | grep -c '^GPU ')
gpu_name=$(nvidia-smi -L | head -1)

# --- build ------------------------------------------------------------------------------
same_tree() {  # $1: a build dir; true when it was configured from this source tree
  local home
  home=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$1/CMakeCache.txt" 2>/dev/null)
  [ -n "$home" ] && [ "$(cd "$home" 2>/dev/null && pwd -P)" = "$root" ]
}
build=${1:-${GW_GPU_BUILD:-}}
if [ -z "$build" ]; then
  build=$root/build-gpu
  same_tree "${TMPDIR:-/tmp}/gwgpu" && build=${TMPDIR:-/tmp}/gwgpu  # remote.sh's build
fi
mkdir -p "$build"
cache=$build/CMakeCache.txt
if [ ! -f "$cache" ] || ! grep -q '^GRADWIRE_NCCL:STRING=ON$' "$cache" ||
   ! grep -q '^GRADWIRE_CUDA:STRING=ON$' "$cache"; then
  gen=(); [ -f "$cache" ] || { command -v ninja >/dev/null 2>&1 && gen=(-G Ninja); }
  args=(-DCMAKE_BUILD_TYPE=Release -DGRADWIRE_CUDA=ON -DGRADWIRE_NCCL=ON -DGRADWIRE_MPI=ON
        -DGRADWIRE_BUILD_TESTS=ON -DGRADWIRE_BUILD_BENCH=ON)
  [ -n "${MPI_HOME:-}" ] && args+=("-DMPI_HOME=$MPI_HOME")
  [ -n "${NCCL_ROOT:-}" ] && args+=("-DNCCL_ROOT=$NCCL_ROOT")
  [ -x /usr/local/cuda/bin/nvcc ] && [ -z "${CUDACXX:-}" ] && args+=(-DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc)
  echo "=== gpu_check: configure $build (CUDA + NCCL + MPI)"
  # shellcheck disable=SC2086  # GW_CMAKE_ARGS is a list of words on purpose
  if ! cmake -S "$root" -B "$build" "${gen[@]}" "${args[@]}" ${GW_CMAKE_ARGS:-} >"$build/gpu-check-configure.log" 2>&1; then
    tail -40 "$build/gpu-check-configure.log"
    echo "gpu_check: configure failed (needs CUDA, NCCL: NCCL_ROOT, MPI: MPI_HOME). Exit 3." >&2
    exit 3
  fi
  grep -E '^-- gradwire:' "$build/gpu-check-configure.log"
fi
echo "=== gpu_check: build in $build"
if ! cmake --build "$build" -j "$(nproc)" --target gw_gpu_tests gw_mpi_tests gw_allreduce gw_codec_bench_gpu; then
  echo "gpu_check: build failed. Exit 3." >&2
  exit 3
fi
bin() { find "$build" -name "$1" -type f -perm -u+x | head -1; }
gpu_tests=$(bin gw_gpu_tests); mpi_tests=$(bin gw_mpi_tests); allreduce=$(bin gw_allreduce)
codec_bench=$(bin gw_codec_bench_gpu)

mpirun=mpirun
if [ -n "${MPI_HOME:-}" ] && [ -x "$MPI_HOME/bin/mpirun" ]; then
  mpirun=$MPI_HOME/bin/mpirun
elif ! command -v mpirun >/dev/null 2>&1; then
  mpirun=$(sed -n 's/^MPIEXEC_EXECUTABLE:FILEPATH=//p' "$cache")
fi
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export GRADWIRE_TIMEOUT=${GRADWIRE_TIMEOUT:-60} GRADWIRE_INIT_TIMEOUT=${GRADWIRE_INIT_TIMEOUT:-60}
# The suite's per-test hang guard: the 100-communicator loop makes 100 NCCL communicators.
export GW_TEST_TIMEOUT=${GW_TEST_TIMEOUT:-300}
export NCCL_DEBUG=${NCCL_DEBUG:-WARN}  # NCCL's own warnings land in the logs
first_gpu=$(nvidia-smi --query-gpu=index --format=csv,noheader | head -1)

# --- checks -----------------------------------------------------------------------------
summary=()
failed=0
logdir=$build/gpu-check-logs
mkdir -p "$logdir"
# run NAME COMMAND...: runs, keeps the output, records PASS/FAIL with the time taken.
run() {
  local name=$1; shift
  echo; echo "=== gpu_check: $name: $*"
  local t0=$SECONDS rc
  "$@" 2>&1 | tee "$logdir/$name.log"
  rc=${PIPESTATUS[0]}
  local verdict=PASS
  [ "$rc" -eq 0 ] || { verdict="FAIL (exit $rc)"; failed=1; }
  summary+=("| $name | \`$*\` | $verdict | $((SECONDS - t0)) s |")
  return "$rc"
}
# expect NAME WHAT REGEX [absent]: a condition on a step's output, recorded like a step.
expect() {
  local name=$1 what=$2 re=$3 absent=${4:-}
  local ok=0
  if grep -Eq "$re" "$logdir/$name.log"; then ok=1; fi
  [ -n "$absent" ] && ok=$((1 - ok))
  if [ $ok -eq 1 ]; then
    summary+=("| $name | $what | PASS | |")
  else
    summary+=("| $name | $what | FAIL | |"); failed=1
    echo "gpu_check: $name: expected: $what" >&2
  fi
}

run gpu_tests "$gpu_tests" --gtest_color=no
expect gpu_tests "no GPU test skipped" '^\[  SKIPPED \]' absent

# The codec benchmark (about a minute; bench/results/codec-gpu.md says what to record).
run codec_bench_gpu "$codec_bench" --benchmark_out="$logdir/codec-gpu.json" --benchmark_out_format=json
run torch_peers python3 "$root/bench/gpu/torch_peers.py"  # exits 0 saying so without torch

run mpi_np1 "$mpirun" --oversubscribe -np 1 "$mpi_tests" --gtest_color=no
expect mpi_np1 "device tests ran (none of Device, DeviceSetupGpu, PlanDeviceGpu, PowerSgdDeviceGpu skipped)" \
  '^\[  SKIPPED \] (Device|DeviceSetupGpu|PlanDeviceGpu|PowerSgdDeviceGpu)\.' absent
expect mpi_np1 "the 100-communicator loop passed" '^\[       OK \] DeviceSetupGpu\.HundredCommunicatorsWithADeviceCallEach'
expect mpi_np1 "device SRA plan on the GPU (NCCL) gave the host plan's bits" '^\[       OK \] PlanDeviceGpu\.SraQ8MatchesHostBits'

run mpi_np2_one_gpu env CUDA_VISIBLE_DEVICES="$first_gpu" "$mpirun" --oversubscribe -np 2 "$mpi_tests" --gtest_color=no
expect mpi_np2_one_gpu "dense device tests skipped with the shared-GPU reason" \
  'share a GPU \(more ranks than GPUs\)'
expect mpi_np2_one_gpu "the shared-GPU error test ran and passed" \
  '^\[       OK \] DeviceSetupShared\.SharedGpuIsAClearErrorForDeviceCallsOnly'
expect mpi_np2_one_gpu "device plans on the shared GPU ran (none of PlanDeviceGpu skipped)" \
  '^\[  SKIPPED \] PlanDeviceGpu\.' absent
expect mpi_np2_one_gpu "device SRA plan (staged-compressed) gave the host plan's bits" \
  '^\[       OK \] PlanDeviceGpu\.SraQ8MatchesHostBits'
expect mpi_np2_one_gpu "device powersgd ran on the shared GPU (cuBLAS/cuSOLVER, no NCCL)" \
  '^\[       OK \] PowerSgdDeviceGpu\.MatchesTheHostPlanStepByStep'

run plan_device_np4_one_gpu env CUDA_VISIBLE_DEVICES="$first_gpu" "$mpirun" --oversubscribe -np 4 \
  "$mpi_tests" --gtest_color=no --gtest_filter='PlanDevice*:PlanReference*'
expect plan_device_np4_one_gpu "device plans at 4 ranks on one GPU ran (none skipped)" \
  '^\[  SKIPPED \] PlanDeviceGpu\.' absent

run allreduce_cuda_np1 "$mpirun" --oversubscribe -np 1 "$allreduce" -d cuda -c -m 8:4M -i 50 -x 10
if [ "$gpus" -ge 2 ]; then
  run allreduce_cuda_np2 "$mpirun" --oversubscribe -np 2 "$allreduce" -d cuda -c -m 8:4M -i 50 -x 10
fi

# --- summary ----------------------------------------------------------------------------
out=${GW_GPU_CHECK_SUMMARY:-$build/gpu-check-summary.md}
{
  echo "GPU check, $(date -u '+%Y-%m-%d %H:%M UTC'), $(hostname)"
  echo
  echo "- GPU: $gpu_name ($gpus visible); driver $(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -1)"
  echo "- source: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$root" status --porcelain 2>/dev/null | grep -q . && echo ' (with local changes)')"
  echo "- build: $build; MPI: $("$mpirun" --version 2>/dev/null | head -1)"
  echo "- GRADWIRE_TIMEOUT=$GRADWIRE_TIMEOUT GRADWIRE_INIT_TIMEOUT=$GRADWIRE_INIT_TIMEOUT GW_TEST_TIMEOUT=$GW_TEST_TIMEOUT NCCL_DEBUG=$NCCL_DEBUG; logs in $logdir"
  echo
  echo "| step | command / condition | outcome | time |"
  echo "|---|---|---|---|"
  printf '%s\n' "${summary[@]}"
  echo
  [ $failed -eq 0 ] && echo "All checks passed." || echo "Some checks FAILED (see above)."
} >"$out"
echo; cat "$out"
[ -n "${OUT:-}" ] && [ -d "${OUT:-}" ] && cp "$out" "$OUT/gpu-check-summary.md" && cp -r "$logdir" "$OUT/" 2>/dev/null
exit $failed
