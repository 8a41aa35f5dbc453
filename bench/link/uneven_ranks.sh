#!/usr/bin/env bash
# Uneven ranks (issue 13): rank 3 of 4 slowed to half speed on purpose (GRADWIRE_SLOW_RANK),
# q8 SRA allreduce of 64 MB with balanced against even shards in one run, beside the cost
# model's prediction of each, on the unshaped host and over an emulated 1 Gbit/s link.
#
#   bench/link/uneven_ranks.sh [--build DIR] [--out DIR] [--links "host 1gbit"] [--rounds 7]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$root/build-cpu out="" links="host 1gbit" rounds=7 slow=3:2
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --links) links=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --slow) slow=$2; shift 2 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "uneven_ranks.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
out=${out:-$build/uneven-ranks}
mkdir -p "$out"
bin=$build/bench/gw_uneven_ranks
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 GRADWIRE_SLOW_RANK=$slow
for link in $links; do
  {
    echo "# $(date -u +%FT%TZ) link $link; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    if [ "$link" = host ]; then
      echo "# GRADWIRE_SLOW_RANK=$slow mpirun --oversubscribe -np 4 $bin -n 16777216 -r $rounds"
      mpirun --oversubscribe -np 4 "$bin" -n 16777216 -r "$rounds"
    else
      echo "# GRADWIRE_SLOW_RANK=$slow bench/link/emulated_link.sh --rate $link --np 4 -- $bin -n 16777216 -r $rounds"
      "$root/bench/link/emulated_link.sh" --rate "$link" --np 4 -- "$bin" -n 16777216 -r "$rounds"
    fi
    echo "# $(date -u +%FT%TZ) load after: $(cut -d' ' -f1-3 /proc/loadavg)"
  } 2>&1 | tee "$out/$link.txt"
done
