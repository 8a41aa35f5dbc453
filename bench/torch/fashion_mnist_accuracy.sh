#!/usr/bin/env bash
# Runs bench/torch/fashion_mnist_accuracy.py at 4 ranks for seeds 1-3 (one launch each, one
# after another: the machine is shared), logs to $out/seed<N>.log with command, date and load.
# Usage: bench/torch/fashion_mnist_accuracy.sh [STEPS] [OUT_DIR]
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
steps=${1:-120}
out=${2:-$root/bench/results/torch-fashion-mnist}
py=${GW_PY_PYTHON:-/opt/gradwire-venv/bin/python}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p "$out"
for seed in 1 2 3; do
  log=$out/seed$seed.log
  {
    echo "# $(date -u '+%F %T') UTC; load: $(uptime | sed 's/.*load average: //')"
    echo "# mpirun -np 4 python bench/torch/fashion_mnist_accuracy.py $seed $steps"
  } >"$log"
  timeout 3000 mpirun --oversubscribe -np 4 "$py" "$root/bench/torch/fashion_mnist_accuracy.py" \
    "$seed" "$steps" >>"$log" 2>&1
  echo "# exit $? at $(date -u '+%F %T') UTC; load: $(uptime | sed 's/.*load average: //')" >>"$log"
done
