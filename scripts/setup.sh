#!/usr/bin/env bash
# Installs the Debian packages gradwire needs that this machine lacks. Idempotent: installs
# nothing, and asks no registry, when everything is present. Needs root (or sudo) to install.
set -euo pipefail

packages=(
  cmake ninja-build g++ pkg-config       # build
  libopenmpi-dev openmpi-bin             # rendezvous and host collectives
  libgtest-dev libgmock-dev              # tests
  libbenchmark-dev                       # codec throughput benchmark
  clang libclang-rt-14-dev               # libFuzzer targets (CI runs them briefly)
  libopenblas-dev zlib1g-dev             # examples/fashion_mnist: cblas_sgemm, reading .gz
  liblapacke-dev                         # PowerSGD plans: QR (LAPACKE_sgeqrf/sorgqr) on the host
  dataset-fashion-mnist                  # examples/fashion_mnist: the data (IDX files, gzipped)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all packages present"
  exit 0
fi
echo "setup: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
