#!/usr/bin/env bash
# The GPU check: everything GPU-facing, on a machine with an NVIDIA GPU, in the time a lent
# GPU machine gives (about 10 minutes a command; a run cut off returns only what it wrote).
#
#   scripts/gpu_check.sh [--quick] [--dry-run] [BUILD_DIR]
#   bash .gpu/remote.sh scripts/gpu_check.sh --quick   (on a lent machine, after prepare.sh)
#
# Shape (README.md, "GPU check"):
# - the steps run in order of value (STEPS below): the build, the GPU unit tests, the device
#   collectives and plans at 1 rank, then at 2 and 4 ranks sharing one GPU, then the Python
#   tier on CUDA tensors, then the benchmarks;
# - every step runs under its own `timeout`, and never past the run's budget (540 s, --quick
#   290 s, GW_GPU_CHECK_BUDGET=S): a step that would start with under 10 s left is skipped
#   saying so, so --quick fits in 5 minutes whatever hangs;
# - each step's log and the running summary (gpu-check-summary.md) are written to $OUT
#   (default: build-gpu-check/ in the tree) as each step ends, not at the end;
# - what is not the product's fault is skipped with the reason, not failed: no python3 (the
#   PyTorch peer and the Python tier), a GPU in exclusive-process compute mode (ranks cannot
#   share it: the 2- and 4-rank steps), fewer than 2 GPUs (the 2-rank benchmark). MIG
#   instances and a preset CUDA_VISIBLE_DEVICES are honoured: ranks sharing a GPU are pinned
#   to the first visible device by its UUID (an index would follow a different order).
# --quick: the same steps, lighter (no 100-communicator loop, no benchmarks but a short
#   sweep). --dry-run: the CPU-side steps only (the build, and every GPU step's skip path),
#   for timing them on a machine without a GPU (bench/results/gpu-check.md).
# Build: BUILD_DIR, GW_GPU_BUILD, remote.sh's ${TMPDIR:-/tmp}/gwgpu, else build-gpu/ (made
#   with CUDA + NCCL + MPI: MPI_HOME, NCCL_ROOT, GW_CMAKE_ARGS from the environment).
# Exit status: 0 every step passed or was skipped with a reason; 1 a step failed; 2 no GPU
#   here (without --dry-run); 3 configure or build failed.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd -P)

quick=0 dry=0 build=
for a in "$@"; do
  case $a in
    --quick) quick=1 ;;
    --dry-run) dry=1 ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d'; exit 0 ;;
    -*) echo "gpu_check: unknown option $a" >&2; exit 3 ;;
    *) build=$a ;;
  esac
done

out=${OUT:-$root/build-gpu-check}
mkdir -p "$out/logs"
rm -f "$out/logs/"*.log  # a condition must never read an earlier run's log
budget=${GW_GPU_CHECK_BUDGET:-$([ $quick -eq 1 ] && echo 290 || echo 540)}
t0=$SECONDS
mode=full
[ $quick -eq 1 ] && mode=quick
[ $dry -eq 1 ] && mode="$mode, dry run"

# --- the machine ------------------------------------------------------------------------
gpu_list=$(nvidia-smi -L 2>/dev/null || true)
have_gpu=0
grep -q '^GPU ' <<<"$gpu_list" && have_gpu=1
# The device ranks share: the first one visible, as CUDA_VISIBLE_DEVICES names it, else the
# first MIG instance or GPU by UUID; and how many devices a process sees.
if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then
  one_gpu=${CUDA_VISIBLE_DEVICES%%,*}
  visible=$(tr ',' '\n' <<<"$CUDA_VISIBLE_DEVICES" | grep -c .)
elif grep -q 'MIG-' <<<"$gpu_list"; then
  one_gpu=$(grep -o 'MIG-[0-9a-fA-F-]*' <<<"$gpu_list" | head -1)
  visible=1  # CUDA enumerates one MIG instance per process
else
  one_gpu=$(grep -o 'GPU-[0-9a-fA-F-]*' <<<"$gpu_list" | head -1)
  visible=$(grep -c '^GPU ' <<<"$gpu_list")
fi
compute_mode=$(nvidia-smi --query-gpu=compute_mode --format=csv,noheader 2>/dev/null | head -1)
gpu_name=$(head -1 <<<"$gpu_list")

# --- the summary, rewritten as each step ends --------------------------------------------
rows=()
failed=0
write_summary() {
  local state=${1:-running}
  {
    echo "# GPU check ($mode), $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(hostname)"
    echo
    echo "- GPU: ${gpu_name:-none} (${visible:-0} visible; compute mode ${compute_mode:-unknown}; shared by ranks: ${one_gpu:-none})"
    echo "- source: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$root" status --porcelain 2>/dev/null | grep -q . && echo ' (with local changes)')"
    echo "- build: ${build:-not yet}; budget ${budget} s, used $((SECONDS - t0)) s; logs in $out/logs"
    echo "- GRADWIRE_TIMEOUT=${GRADWIRE_TIMEOUT:-} GRADWIRE_INIT_TIMEOUT=${GRADWIRE_INIT_TIMEOUT:-} GW_TEST_TIMEOUT=${GW_TEST_TIMEOUT:-} NCCL_DEBUG=${NCCL_DEBUG:-}"
    echo
    echo "| step | command / condition | outcome | time |"
    echo "|---|---|---|---|"
    [ ${#rows[@]} -gt 0 ] && printf '%s\n' "${rows[@]}"
    echo
    case $state in
      running) echo "Still running (or cut off after the last row)." ;;
      *) [ $failed -eq 0 ] && echo "Done: every step passed or was skipped with its reason." ||
           echo "Done: some steps FAILED (see above and logs/)." ;;
    esac
  } >"$out/gpu-check-summary.md.tmp" && mv "$out/gpu-check-summary.md.tmp" "$out/gpu-check-summary.md"
}
record() {  # NAME WHAT OUTCOME [SECONDS]
  rows+=("| $1 | $2 | $3 | ${4:+$4 s} |")
  case $3 in FAIL*|TIMEOUT*) failed=1 ;; esac
  echo "=== gpu_check: $1: $3${4:+ ($4 s)}"
  write_summary
}
skip() { record "$1" "$2" "SKIP: $3"; }
left() { echo $((budget - (SECONDS - t0))); }

# step NAME LIMIT_S COMMAND...: COMMAND under `timeout` (LIMIT_S, or what is left of the
# budget), its output in logs/NAME.log; PASS, FAIL (exit N) or TIMEOUT.
step() {
  local name=$1 limit=$2
  shift 2
  local remaining
  remaining=$(left)
  if [ "$remaining" -lt 10 ]; then
    skip "$name" "\`$*\`" "no time left in the ${budget} s budget"
    return 1
  fi
  [ "$limit" -gt "$remaining" ] && limit=$remaining
  echo; echo "=== gpu_check: $name (at most $limit s): $*"
  local s=$SECONDS rc
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$out/logs/$name.log"
  rc=${PIPESTATUS[0]}
  local verdict=PASS
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    verdict="TIMEOUT after $limit s"
  elif [ "$rc" -ne 0 ]; then
    verdict="FAIL (exit $rc)"
  fi
  record "$name" "\`$*\`" "$verdict" $((SECONDS - s))
  [ "$rc" -eq 0 ]
}
# expect NAME WHAT REGEX [absent]: a condition on a step's log, recorded like a step.
expect() {
  local name=$1 what=$2 re=$3 absent=${4:-} ok=0
  [ -f "$out/logs/$name.log" ] || return 0  # the step did not run: its row says why
  grep -Eq "$re" "$out/logs/$name.log" && ok=1
  [ -n "$absent" ] && ok=$((1 - ok))
  if [ $ok -eq 1 ]; then record "$name" "$what" PASS; else record "$name" "$what" FAIL; fi
}
finish() {
  write_summary final
  echo; cat "$out/gpu-check-summary.md"
  exit "$1"
}

write_summary
if [ $have_gpu -eq 0 ] && [ $dry -eq 0 ]; then
  skip machine "nvidia-smi lists a GPU" "no NVIDIA GPU here (nvidia-smi missing or lists none); run it on a machine with one, or --dry-run"
  finish 2
fi

# --- 1. build ----------------------------------------------------------------------------
same_tree() {  # $1: a build dir; true when it was configured from this source tree
  local home
  home=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$1/CMakeCache.txt" 2>/dev/null)
  [ -n "$home" ] && [ "$(cd "$home" 2>/dev/null && pwd -P)" = "$root" ]
}
build=${build:-${GW_GPU_BUILD:-}}
if [ -z "$build" ]; then
  build=$root/build-gpu
  same_tree "${TMPDIR:-/tmp}/gwgpu" && build=${TMPDIR:-/tmp}/gwgpu  # remote.sh's build
fi
mkdir -p "$build"
cache=$build/CMakeCache.txt
cfg=(-DCMAKE_BUILD_TYPE=Release -DGRADWIRE_CUDA=ON -DGRADWIRE_NCCL=ON -DGRADWIRE_MPI=ON
     -DGRADWIRE_BUILD_TESTS=ON -DGRADWIRE_BUILD_BENCH=ON)
[ -f "$cache" ] || { command -v ninja >/dev/null 2>&1 && cfg+=(-G Ninja); }
[ -n "${MPI_HOME:-}" ] && cfg+=("-DMPI_HOME=$MPI_HOME")
[ -n "${NCCL_ROOT:-}" ] && cfg+=("-DNCCL_ROOT=$NCCL_ROOT")
[ -x /usr/local/cuda/bin/nvcc ] && [ -z "${CUDACXX:-}" ] && cfg+=(-DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc)
command -v ccache >/dev/null 2>&1 && cfg+=(-DCMAKE_C_COMPILER_LAUNCHER=ccache
  -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
# shellcheck disable=SC2206  # GW_CMAKE_ARGS is a list of words on purpose
cfg+=(${GW_CMAKE_ARGS:-})
targets=(gw_gpu_tests gw_mpi_tests gw_allreduce)
[ $quick -eq 0 ] && targets+=(gw_codec_bench_gpu)
# A tree configured with CUDA and NCCL (ON, or AUTO having found them) is reused as it is.
if [ ! -f "$cache" ] || ! grep -Eq '^GRADWIRE_NCCL:STRING=(ON|AUTO)$' "$cache" ||
   ! grep -Eq '^GRADWIRE_CUDA:STRING=(ON|AUTO)$' "$cache"; then
  step configure 240 cmake -S "$root" -B "$build" "${cfg[@]}" || finish 3
fi
step build 300 cmake --build "$build" -j "$(nproc)" --target "${targets[@]}" || finish 3
bin() { find "$build" -name "$1" -type f -perm -u+x 2>/dev/null | head -1; }
gpu_tests=$(bin gw_gpu_tests); mpi_tests=$(bin gw_mpi_tests); allreduce=$(bin gw_allreduce)
codec_bench=$(bin gw_codec_bench_gpu)
[ -n "$gpu_tests" ] || { record build "gw_gpu_tests built (a CUDA build)" FAIL; finish 3; }

mpirun=mpirun
if [ -n "${MPI_HOME:-}" ] && [ -x "$MPI_HOME/bin/mpirun" ]; then
  mpirun=$MPI_HOME/bin/mpirun
elif ! command -v mpirun >/dev/null 2>&1; then
  mpirun=$(sed -n 's/^MPIEXEC_EXECUTABLE:FILEPATH=//p' "$cache")
fi
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export GRADWIRE_TIMEOUT=${GRADWIRE_TIMEOUT:-60} GRADWIRE_INIT_TIMEOUT=${GRADWIRE_INIT_TIMEOUT:-60}
# The suite's per-test hang guard (the 100-communicator loop makes 100 NCCL communicators).
export GW_TEST_TIMEOUT=${GW_TEST_TIMEOUT:-$([ $quick -eq 1 ] && echo 60 || echo 200)}
export NCCL_DEBUG=${NCCL_DEBUG:-WARN}           # NCCL's own warnings land in the logs

# Why a step cannot run here ("" when it can). The reason particular to a step comes first,
# so a dry run shows each step's own skip path; then the machine's.
no_gpu=
[ $have_gpu -eq 0 ] && no_gpu="no GPU (dry run)"
[ "${compute_mode:-}" = Prohibited ] && no_gpu="compute mode Prohibited: no process may use the GPU"
shared_why=$no_gpu
[ "${compute_mode:-}" = Exclusive_Process ] &&
  shared_why="compute mode Exclusive_Process: one process per GPU, so ranks cannot share it"
py_why=$no_gpu
command -v python3 >/dev/null 2>&1 || py_why="no python3 on this machine"

# --- the steps, in order of value ---------------------------------------------------------
# Each: a name, its limit (full / quick) and its command; a step whose reason is set is
# skipped with it. To add a step, add a block here in its place by value.
run_or_skip() {  # REASON NAME LIMIT COMMAND...
  local why=$1; shift
  if [ -n "$why" ]; then skip "$1" "\`${*:3}\`" "$why"; return 1; fi
  step "$@"
}
lim() { [ $quick -eq 1 ] && echo "$2" || echo "$1"; }  # FULL QUICK

# 2. GPU unit tests: the CUDA codec kernels against the host codec, bit for bit.
run_or_skip "$no_gpu" gpu_unit "$(lim 180 90)" "$gpu_tests" --gtest_color=no
expect gpu_unit "no GPU test skipped" '^\[  SKIPPED \]' absent

# 3. Device collectives and plans at 1 rank (NCCL). Quick: without the 100-communicator loop.
filter='*Device*'
[ $quick -eq 1 ] && filter='*Device*-DeviceSetupGpu.HundredCommunicators*'
run_or_skip "$no_gpu" device_np1 "$(lim 240 90)" "$mpirun" --oversubscribe -np 1 "$mpi_tests" --gtest_color=no --gtest_filter="$filter"
expect device_np1 "no device test skipped" \
  '^\[  SKIPPED \] (Device|DeviceSetupGpu|PlanDeviceGpu|PowerSgdDeviceGpu)\.' absent
expect device_np1 "device SRA plan on the GPU (NCCL) gave the host plan's bits" \
  '^\[       OK \] PlanDeviceGpu\.SraQ8MatchesHostBits'
[ $quick -eq 0 ] && expect device_np1 "the 100-communicator loop passed" \
  '^\[       OK \] DeviceSetupGpu\.HundredCommunicatorsWithADeviceCallEach'

# 4. 2 ranks on one GPU: dense device calls refused with the shared-GPU reason, device plans
#    through the staged transport, device powersgd; then 4 ranks' device plans.
run_or_skip "$shared_why" device_np2_one_gpu "$(lim 180 75)" \
  env CUDA_VISIBLE_DEVICES="$one_gpu" "$mpirun" --oversubscribe -np 2 "$mpi_tests" --gtest_color=no --gtest_filter='*Device*'
expect device_np2_one_gpu "dense device tests skipped with the shared-GPU reason" 'share a GPU \(more ranks than GPUs\)'
expect device_np2_one_gpu "the shared-GPU error test passed" \
  '^\[       OK \] DeviceSetupShared\.SharedGpuIsAClearErrorForDeviceCallsOnly'
expect device_np2_one_gpu "device plans on the shared GPU ran (none skipped)" '^\[  SKIPPED \] PlanDeviceGpu\.' absent
expect device_np2_one_gpu "device SRA plan (staged-compressed) gave the host plan's bits" \
  '^\[       OK \] PlanDeviceGpu\.SraQ8MatchesHostBits'
expect device_np2_one_gpu "device powersgd ran on the shared GPU" \
  '^\[       OK \] PowerSgdDeviceGpu\.MatchesTheHostPlanStepByStep'
run_or_skip "$shared_why" plans_np4_one_gpu "$(lim 150 60)" \
  env CUDA_VISIBLE_DEVICES="$one_gpu" "$mpirun" --oversubscribe -np 4 "$mpi_tests" --gtest_color=no \
  --gtest_filter="$([ $quick -eq 1 ] && echo 'PlanDeviceGpu.*' || echo 'PlanDeviceGpu.*:PowerSgdDeviceGpu.*:PlanReference*')"
expect plans_np4_one_gpu "device plans at 4 ranks on one GPU ran (none skipped)" '^\[  SKIPPED \] PlanDeviceGpu\.' absent

# 5. The Python tier on CUDA tensors (python/, scripts/test_python.sh), when the tree has it.
python_why=$py_why
[ -x "$root/scripts/test_python.sh" ] || python_why="scripts/test_python.sh is not in this tree"
run_or_skip "$python_why" python_cuda "$(lim 240 90)" \
  env GW_PY_CUDA=ON GW_PY_NCCL=ON GW_PY_NP="1 2" "$root/scripts/test_python.sh"

# 6. Benchmarks (figures, not verdicts: bench/results/codec-gpu.md, gpu-plans.md).
sweep=(-m 8:4M -i 50 -x 10)
[ $quick -eq 1 ] && sweep=(-m 8:1M -i 20 -x 5)
run_or_skip "$no_gpu" allreduce_cuda_np1 "$(lim 90 45)" "$mpirun" --oversubscribe -np 1 "$allreduce" -d cuda -c "${sweep[@]}"
two_why=$no_gpu
[ "${visible:-0}" -ge 2 ] || two_why="fewer than 2 GPUs visible (${visible:-0})"
run_or_skip "$two_why" allreduce_cuda_np2 "$(lim 90 45)" "$mpirun" --oversubscribe -np 2 "$allreduce" -d cuda -c -m 8:4M -i 50 -x 10
bench_why=$no_gpu
[ $quick -eq 1 ] && bench_why="--quick"
run_or_skip "$bench_why" codec_bench_gpu 150 "$codec_bench" \
  --benchmark_out="$out/logs/codec-gpu.json" --benchmark_out_format=json
torch_why=$py_why
[ $quick -eq 1 ] && torch_why="--quick"
run_or_skip "$torch_why" torch_peers 120 python3 "$root/bench/gpu/torch_peers.py"  # says so without torch

finish $failed
