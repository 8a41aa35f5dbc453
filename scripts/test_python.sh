#!/usr/bin/env bash
# The Python tier: installs the gradwire package (pip install ./python, into a venv cached
# between runs) and runs its pytest suite under mpirun at 1, 2, 3 and 4 ranks, plus the
# failure tests that launch their own jobs. Idempotent; scripts/test.sh calls it.
#   GW_PY_VENV   the virtual environment (default /opt/gradwire-venv; made when missing, seeing
#                the system's packages, and given PyTorch from PyPI if it has none)
#   GW_PY_CUDA, GW_PY_NCCL  CUDA/NCCL of the package's build (default OFF here, the CPU tier;
#                AUTO on a GPU machine: GW_PY_CUDA=AUTO GW_PY_NCCL=AUTO scripts/test_python.sh)
#   GW_PY_NP     rank counts (default "1 2 3 4")
# (Not GRADWIRE_*: the library warns about GRADWIRE_ variables it does not know.)
# Exits non-zero on any failure.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${GW_PY_VENV:-/opt/gradwire-venv}
py=$venv/bin/python
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1

if [ ! -x "$py" ]; then
  echo "test_python.sh: making $venv (PyTorch from PyPI: a few GB, once)"
  # --system-site-packages: a machine whose Python already has PyTorch (a GPU machine's, with
  # its CUDA build) uses it instead of installing another.
  python3 -m venv --system-site-packages "$venv" || exit 1
fi
need=()
"$py" -c "import torch" 2>/dev/null || need+=(torch)
"$py" -c "import numpy" 2>/dev/null || need+=(numpy)
"$py" -c "import pytest" 2>/dev/null || need+=(pytest)
"$py" -c "import scikit_build_core" 2>/dev/null || need+=("scikit-build-core>=0.10")
# mpi4py (built against the system MPI): the tests check that gradwire coexists with it.
"$py" -c "import mpi4py" 2>/dev/null || need+=(mpi4py)
if [ ${#need[@]} -gt 0 ]; then
  "$venv/bin/pip" install -q "${need[@]}" || exit 1
fi

# Reinstall the package only when its sources changed since the last install (a stamp in the
# fixed build directory; the build itself is incremental and goes through ccache).
cuda=${GW_PY_CUDA:-OFF}
nccl=${GW_PY_NCCL:-OFF}
stamp=$root/python/build/installed-$cuda-$nccl.stamp
site=$("$py" -c "import sysconfig; print(sysconfig.get_paths()['platlib'])")
changed=$(find "$root/src" "$root/include" "$root/collectives" "$root/cuda" "$root/cmake" \
  "$root/CMakeLists.txt" "$root/python/gradwire" "$root/python/pyproject.toml" -type f \
  -newer "$stamp" -print -quit 2>/dev/null)
if [ ! -f "$stamp" ] || [ -n "$changed" ] || [ ! -f "$site/gradwire/lib/libgradwire.so" ]; then
  echo "test_python.sh: pip install ./python (CUDA=$cuda NCCL=$nccl)"
  mkdir -p "$root/python/build"
  touch "$stamp.new"
  launcher=""
  if command -v ccache >/dev/null; then launcher=ccache; fi
  GW_PY_CCACHE=$launcher GW_PY_CUDA=$cuda GW_PY_NCCL=$nccl "$venv/bin/pip" install -q --no-build-isolation \
    "$root/python" >"$root/python/build/pip.log" 2>&1 || { tail -40 "$root/python/build/pip.log"; exit 1; }
  mv "$stamp.new" "$stamp"
fi

status=0
cd "$root/python/tests" || exit 1
# Each rank count saves a hook checkpoint here and loads the previous count's.
GW_PY_STATE_DIR=$(mktemp -d)
export GW_PY_STATE_DIR
trap 'rm -rf "$GW_PY_STATE_DIR"' EXIT
for np in ${GW_PY_NP:-1 2 3 4}; do
  echo "=== python tests, $np rank(s) ==="
  # -p no:cacheprovider: ranks must not race on .pytest_cache; --timeout is the watchdog of
  # last resort (each test is bounded by GRADWIRE_TIMEOUT itself).
  timeout 900 mpirun --oversubscribe -np "$np" -x GRADWIRE_TIMEOUT=60 \
    "$py" -m pytest -q -p no:cacheprovider --color=no -x ranked/ || status=1
done
echo "=== python tests, failure cases (their own mpirun jobs) ==="
timeout 600 "$py" -m pytest -q -p no:cacheprovider --color=no jobs/ || status=1
[ $status -eq 0 ] && echo "test_python.sh: passed" || echo "test_python.sh: FAILED"
exit $status
