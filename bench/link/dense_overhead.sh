#!/usr/bin/env bash
# gradwire's dense allreduce against MPI_Allreduce on the unshaped host (shared memory), in
# the same run, alternating in 10 rounds: the "within 2 % at >= 1 MB, within 1 us at 8 B"
# figures. Runs at 4 ranks (2 cores here: oversubscribed) and at 2 ranks.
#
#   bench/link/dense_overhead.sh [--out DIR] [--build DIR] [--nps "4 2"]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out="$root/bench/results" build="$root/build-bench" nps="4 2"
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --nps) nps=$2; shift 2 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "dense_overhead.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
bin="$build/bench/osu/gw_allreduce"
[ -x "$bin" ] || { echo "dense_overhead.sh: build gw_allreduce first ($bin)" >&2; exit 2; }
mkdir -p "$out"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
for np in $nps; do
  log="$out/allreduce-dense-host-np$np.txt" json="$out/allreduce-dense-host-np$np.json"
  : >"$json"
  echo "# $(date -u +%FT%TZ) np $np; load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$log"
  for run in "-m 8:8 -i 20000 -x 2000" "-m 1M:16M -i 200 -x 10" "-m 32M:128M -i 40 -x 3"; do
    # shellcheck disable=SC2086
    cmd=(mpirun --oversubscribe -np "$np" "$bin" $run -f -c --json "$json.part")
    echo "# ${cmd[*]}" | sed "s|$root/||g" | tee -a "$log"
    "${cmd[@]}" 2>&1 | tee -a "$log"
    cat "$json.part" >>"$json"
    rm -f "$json.part"
  done
  echo "# done; load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$log"
done
