#!/usr/bin/env bash
# Runs bench/torch/ddp_throughput.py at 4 ranks on the unshaped host (plain mpirun: gloo over
# TCP loopback, gradwire's MPI over shared memory) and on the emulated 1 Gbit/s link
# (bench/link/emulated_link.sh: every rank's TCP, gloo's and MPI's, through one shaped
# loopback), one launch each, one after the other. Writes $out/{host,1gbit}.{json,log}, each
# log with its command, date and load. Needs root for the emulated link.
# Usage: bench/torch/ddp_throughput.sh [OUT_DIR] [LINKS] [-- driver options]
#   LINKS: "host 1gbit" (default), or one of them.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/bench/results/torch-peers}
links=${2:-host 1gbit}
shift $(( $# < 2 ? $# : 2 ))
[ "${1:-}" = "--" ] && shift
py=${GW_PY_PYTHON:-/opt/gradwire-venv/bin/python}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# gloo's rendezvous and its sockets on the loopback: inside the link's namespace lo is the
# only interface, and the host name's address is not there.
export MASTER_ADDR=127.0.0.1 GLOO_SOCKET_IFNAME=lo
# One compute thread per rank for every row: the driver sets torch's (torch.set_num_threads);
# this is the BLAS's that gradwire's host PowerSGD multiplies with (4 ranks on 2 cores).
export OPENBLAS_NUM_THREADS=1
mkdir -p "$out"
load() { uptime | sed 's/.*load average: //'; }
for link in $links; do
  log=$out/$link.log
  cmd=("$py" "$root/bench/torch/ddp_throughput.py" --out "$out/$link.json" "$@")
  case $link in
    host) launch=(mpirun --oversubscribe -np 4 -x MASTER_ADDR -x GLOO_SOCKET_IFNAME -x OPENBLAS_NUM_THREADS) ;;
    1gbit) launch=("$root/bench/link/emulated_link.sh" --rate 1gbit --np 4 --
                   -x MASTER_ADDR -x GLOO_SOCKET_IFNAME -x OPENBLAS_NUM_THREADS) ;;
    *) echo "ddp_throughput.sh: unknown link $link (host, 1gbit)" >&2; exit 2 ;;
  esac
  {
    echo "# $(date -u '+%F %T') UTC; load: $(load)"
    echo "# ${launch[*]} ${cmd[*]#$root/}"
  } >"$log"
  timeout 3000 "${launch[@]}" "${cmd[@]}" >>"$log" 2>&1
  echo "# exit $? at $(date -u '+%F %T') UTC; load: $(load)" >>"$log"
done
