#!/usr/bin/env bash
# Runs bench/torch/fashion_mnist_accuracy.py at 4 ranks, one launch per seed, one after another
# (the machine is shared), each logged to $out/seed<N>.log with its command, date and load.
# Usage: bench/torch/fashion_mnist_accuracy.sh [EPOCHS] [OUT_DIR] [SEEDS] [CONFIGS]
#   SEEDS: space-separated (default "1 2 3"); CONFIGS: comma-separated (default all).
# The package is the tree's (python/), the library GW_PY_LIBRARY or build-cpu's.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
epochs=${1:-3}
out=${2:-$root/bench/results/torch-fashion-mnist}
seeds=${3:-1 2 3}
configs=${4:-}
py=${GW_PY_PYTHON:-/opt/gradwire-venv/bin/python}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export PYTHONPATH=$root/python${PYTHONPATH:+:$PYTHONPATH}
export GW_PY_LIBRARY=${GW_PY_LIBRARY:-$root/build-cpu/src/libgradwire.so}
mkdir -p "$out"
for seed in $seeds; do
  log=$out/seed$seed.log
  {
    echo "# $(date -u '+%F %T') UTC; load: $(uptime | sed 's/.*load average: //')"
    echo "# mpirun -np 4 python bench/torch/fashion_mnist_accuracy.py $seed $epochs $configs"
  } >>"$log"
  timeout 5400 mpirun --oversubscribe -np 4 "$py" "$root/bench/torch/fashion_mnist_accuracy.py" \
    "$seed" "$epochs" $configs >>"$log" 2>&1
  echo "# exit $? at $(date -u '+%F %T') UTC; load: $(uptime | sed 's/.*load average: //')" >>"$log"
done
