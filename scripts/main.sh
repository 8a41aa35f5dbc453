#!/usr/bin/env bash
# The main job: installs what is missing, builds, and runs the short standard comparison:
# allreduce at 4 ranks, 1-16 MB, codecs none, fp16, q8, q4, sign+EF, topk:0.01+EF and the
# shared-grid algorithm beside MPI_Allreduce timed in the same run, on the host (shared memory)
# and over an emulated 1 Gbit/s link (a network namespace; root only). Tables and a plot land
# in build/bench-short/. Extra arguments go to bench/link/standard_comparison.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# What it is doing, on stderr (the comparison's own progress: size n of N, codec, time left).
echo "main.sh: step 1 of 3: setup (packages)" >&2
"$root/scripts/setup.sh"
echo "main.sh: step 2 of 3: build ($root/build)" >&2
"$root/scripts/build.sh" "$root/build" -DGRADWIRE_BUILD_TESTS=OFF -DGRADWIRE_BUILD_BENCH=ON >/dev/null
echo "main.sh: step 3 of 3: the standard comparison (bench/link/standard_comparison.sh --short)" >&2
links=()
[ "$(id -u)" -eq 0 ] || { echo "main.sh: not root: host run only (the emulated link needs root)"; links=(--links host); }
exec "$root/bench/link/standard_comparison.sh" --short --build "$root/build" "${links[@]}" "$@"
