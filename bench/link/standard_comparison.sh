#!/usr/bin/env bash
# The standard comparison (issue 5): allreduce at 4 ranks, float32, 1 MB .. 128 MB, codecs
# none, fp16, q8, q4, sign+EF, topk:0.01+EF (each through its named algorithm), the
# shared-grid algorithm (q4) and "auto" with q8 (the cost model's choice), on the
# unshaped host (shared memory) and over an emulated 1 Gbit/s and 2.5 Gbit/s link; then a
# markdown table and a PNG plot.
#
#   bench/link/standard_comparison.sh [--short] [--out DIR] [--build DIR] [-i N] [--np N]
#                                     [--links "host 1gbit 2.5gbit"]
#
# --short: 1 MB .. 16 MB, 2 iterations, host and 1 Gbit/s only (about a minute); writes to
# BUILD/bench-short unless --out says otherwise. The full run writes bench/results/ and takes
# a few minutes (64 MB x 4 ranks of dense allreduce is ~3 s per call on the shared 1 Gbit/s
# link; see emulated_link.sh). Needs root for the emulated links.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

short=0 out="" build="$root/build-bench" iters="" np=4 links=""
while [ $# -gt 0 ]; do
  case "$1" in
    --short) short=1; shift ;;
    --out) out=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    -i) iters=$2; shift 2 ;;
    --np) np=$2; shift 2 ;;
    --links) links=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "standard_comparison.sh: unknown option $1 (see -h)" >&2; exit 2 ;;
  esac
done
if [ $short = 1 ]; then
  sizes=1M:16M; : "${iters:=2}"; : "${links:=host 1gbit}"; : "${out:=$build/bench-short}"
else
  sizes=1M:128M; : "${iters:=3}"; : "${links:=host 1gbit 2.5gbit}"; : "${out:=$root/bench/results}"
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)

bin="$build/bench/osu/gw_allreduce"
if [ ! -x "$bin" ]; then
  echo "# building gw_allreduce in $build"
  # An existing build directory keeps its own configuration; a new one gets a CPU-only,
  # benchmarks-only configuration.
  if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S "$root" -B "$build" -G Ninja -DGRADWIRE_CUDA=OFF -DGRADWIRE_BUILD_TESTS=OFF >/dev/null
  fi
  cmake --build "$build" -j2 --target gw_allreduce >/dev/null
fi
need_root=0
for l in $links; do [ "$l" = host ] || need_root=1; done
if [ $need_root = 1 ] && [ "$(id -u)" -ne 0 ]; then
  echo "standard_comparison.sh: the emulated links need root (ip netns, tc); run as root, or" \
       "--links host for the shared-memory run alone" >&2
  exit 3
fi

# Each codec through a named algorithm, so a row means what its label says; "q8" alone is the
# plan's "auto" (the cost model picks dense or sra: docs/compressed-collectives.md).
codecs=(--codec none --codec fp16@sra --codec q8@sra --codec q4@sra --codec sign@sra+ef
        --codec topk:0.01@sparse-allgather+ef --codec q4@shared-grid --codec q8)
common=(-m "$sizes" -i "$iters" -x 1 -T float -f "${codecs[@]}" --timeout 600)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# On a terminal: which link, size n of N, codec and the time left, on stderr, not in the logs.
export GW_BENCH_PROGRESS=1
# shellcheck source=progress.sh
source "$here/progress.sh"
nlinks=$(echo "$links" | wc -w) li=0
for l in $links; do
  li=$((li + 1))
  log="$out/allreduce-$l.txt" json="$out/allreduce-$l.json"
  echo "# $(date -u +%FT%TZ) link $l; load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$log"
  if [ "$l" = host ]; then
    # Validation (-c) once, here: the error of a codec does not depend on the link.
    cmd=(mpirun --oversubscribe -np "$np" "$bin" "${common[@]}" -c --json "$json")
  else
    cmd=("$here/emulated_link.sh" --rate "$l" --np "$np" -- "$bin" "${common[@]}" --json "$json")
  fi
  # The exact command, first line of the log (the report lists them).
  { echo "# command: ${cmd[*]}" | sed "s|$root/||g"; cat "$log"; } >"$log.tmp" && mv "$log.tmp" "$log"
  "${cmd[@]}" 2>&1 | gw_progress_filter "link $li/$nlinks $l" "$log"
  echo "# done; load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$log"
done

# The report takes every link whose results are in $out (a later run of one link refreshes it).
python3 "$here/comparison_report.py" "$out" host 1gbit 2.5gbit $links
if ! command -v gnuplot >/dev/null; then
  echo "# installing gnuplot-nox for the plot"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q gnuplot-nox >/dev/null 2>&1 ||
    echo "standard_comparison.sh: could not install gnuplot-nox; no plot" >&2
fi
if command -v gnuplot >/dev/null; then
  (cd "$out" && gnuplot allreduce-comparison.gp)
  echo "# plot: $out/allreduce-comparison.png"
fi
echo "# table: $out/allreduce-comparison.md"
