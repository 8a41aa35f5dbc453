#!/usr/bin/env bash
# `auto` against MPI_Allreduce and every fixed choice for its codec (issue 13): 4 ranks, 8 B to
# 128 MB, on the unshaped host and over an emulated 1 Gbit/s link (emulated_link.sh, root).
# Every ratio is taken within one run (the osu benchmark times MPI_Allreduce beside each row).
#
#   bench/link/auto_never_loses.sh [--build DIR] [--out DIR] [--links "host 1gbit"] [--codec q8]
#
# Writes OUT/<link>-{small,large}.{txt,json} and prints the summary (auto_never_loses.py).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$root/build-cpu out="" links="host 1gbit" codec=q8
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --links) links=$2; shift 2 ;;
    --codec) codec=$2; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "auto_never_loses.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
out=${out:-$build/auto-never-loses}
mkdir -p "$out"
bin=$build/bench/osu/gw_allreduce
choices=(--codec none --codec "$codec@sra" --codec "$codec@shared-grid" --codec "$codec")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
for link in $links; do
  # Small sizes: many calls (cheap, noisy); large: few (a 128 MB dense call at 1 Gbit/s ~6 s).
  for part in "small 8:512K 50 5" "large 1M:128M 5 1"; do
    set -- $part
    name=$1 sizes=$2 iters=$3 warm=$4
    args=(-m "$sizes" -i "$iters" -x "$warm" -T float -f "${choices[@]}" --timeout 900
          --json "$out/$link-$name.json")
    {
      echo "# $(date -u +%FT%TZ) link $link; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
      if [ "$link" = host ]; then
        echo "# mpirun --oversubscribe -np 4 $bin ${args[*]}"
        mpirun --oversubscribe -np 4 "$bin" "${args[@]}"
      else
        echo "# bench/link/emulated_link.sh --rate $link --np 4 -- $bin ${args[*]}"
        "$root/bench/link/emulated_link.sh" --rate "$link" --np 4 -- "$bin" "${args[@]}"
      fi
      echo "# $(date -u +%FT%TZ) load after: $(cut -d' ' -f1-3 /proc/loadavg)"
    } 2>&1 | tee "$out/$link-$name.txt"
  done
done
python3 "$root/bench/link/auto_never_loses.py" "$out" $links
