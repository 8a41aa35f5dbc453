#!/usr/bin/env bash
# `auto` against MPI_Allreduce (issues 13, 23). Host: every codec in --codecs under `auto`, at
# each rank count in --ranks, 8 B to 128 MB, --runs times. Emulated link (emulated_link.sh,
# root): 4 ranks, 1-64 MB, `auto` against every fixed choice for the first codec. Every ratio is
# taken within one run (gw_allreduce times each row between two blocks of MPI_Allreduce).
#
#   bench/link/auto_never_loses.sh [--build DIR] [--out DIR] [--ranks "2 3 4"] [--runs 3]
#                                  [--codecs "q8 q4 topk:0.01"] [--links "host 1gbit"]
#                                  [--small "8:512K 1000 100"] [--large "1M:128M 20 2"]
#
# Writes OUT/host-np<P>-run<R>-{small,large}.{txt,json}, OUT/<rate>-np4.{txt,json} and prints
# the summary (auto_never_loses.py). --small/--large: sizes, iterations, warm-up runs (small:
# OSU's 1000 and 100, so that a row's median is not one scheduling hiccup). Host runs add the
# --control row (MPI_Allreduce timed again as a codec): where it misses 0.97x, noise does.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$root/build-cpu out="" ranks="2 3 4" runs=3 codecs="q8 q4 topk:0.01" links="host 1gbit"
small="8:512K 1000 100" large="1M:128M 20 2"
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --ranks) ranks=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --codecs) codecs=$2; shift 2 ;;
    --links) links=$2; shift 2 ;;
    --small) small=$2; shift 2 ;;
    --large) large=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "auto_never_loses.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
out=${out:-$build/auto-never-loses}
mkdir -p "$out"
bin=$build/bench/osu/gw_allreduce
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
stamp() { echo "# $(date -u +%FT%TZ) $1 load: $(cut -d' ' -f1-3 /proc/loadavg)"; }
autos=(--codec none)
for c in $codecs; do autos+=(--codec "$c"); done
first=${codecs%% *}
for link in $links; do
  if [ "$link" = host ]; then
    for run in $(seq "$runs"); do
      for np in $ranks; do
        for part in "small $small" "large $large"; do
          set -- $part
          name=host-np$np-run$run-$1
          args=(-m "$2" -i "$3" -x "$4" -T float -f "${autos[@]}" --control --timeout 900
                --json "$out/$name.json")
          { stamp before; echo "# mpirun --oversubscribe -np $np $bin ${args[*]}"
            mpirun --oversubscribe -np "$np" "$bin" "${args[@]}"; stamp after; } 2>&1 | tee "$out/$name.txt"
        done
      done
    done
  else
    set -- $large
    name=$link-np4
    args=(-m 1M:64M -i "$2" -x "$3" -T float -f --codec none --codec "$first@sra"
          --codec "$first@shared-grid" --codec "$first" --timeout 900 --json "$out/$name.json")
    { stamp before; echo "# bench/link/emulated_link.sh --rate $link --np 4 -- $bin ${args[*]}"
      "$root/bench/link/emulated_link.sh" --rate "$link" --np 4 -- "$bin" "${args[@]}"
      stamp after; } 2>&1 | tee "$out/$name.txt"
  fi
done
python3 "$root/bench/link/auto_never_loses.py" "$out"
