#!/usr/bin/env bash
# Runs bench/torch/time_to_accuracy.py at 4 ranks over the emulated 1 Gbit/s link
# (bench/link/emulated_link.sh; gloo and gradwire's MPI both over the shaped TCP), one launch
# for all seeds; writes $out/time-to-accuracy.{json,log} with command, date and load.
# Needs root. Usage: bench/torch/time_to_accuracy.sh [OUT_DIR] [-- driver options]
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/bench/results/torch-peers}
shift $(( $# < 1 ? $# : 1 ))
[ "${1:-}" = "--" ] && shift
py=${GW_PY_PYTHON:-/opt/gradwire-venv/bin/python}
export MASTER_ADDR=127.0.0.1 GLOO_SOCKET_IFNAME=lo OPENBLAS_NUM_THREADS=1  # (ddp_throughput.sh says why)
mkdir -p "$out"
log=$out/time-to-accuracy.log
load() { uptime | sed 's/.*load average: //'; }
cmd=("$py" "$root/bench/torch/time_to_accuracy.py" --out "$out/time-to-accuracy.json" "$@")
launch=("$root/bench/link/emulated_link.sh" --rate 1gbit --np 4 --
        -x MASTER_ADDR -x GLOO_SOCKET_IFNAME -x OPENBLAS_NUM_THREADS)
{
  echo "# $(date -u '+%F %T') UTC; load: $(load)"
  echo "# ${launch[*]#$root/} ${cmd[*]#$root/}"
} >"$log"
timeout 3000 "${launch[@]}" "${cmd[@]}" >>"$log" 2>&1
echo "# exit $? at $(date -u '+%F %T') UTC; load: $(load)" >>"$log"
