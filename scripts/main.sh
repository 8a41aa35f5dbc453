#!/usr/bin/env bash
# The main job: installs what is missing, builds, and runs an osu-style allreduce sweep under
# mpirun that shows gradwire beside MPI's own MPI_Allreduce.
# Usage: scripts/main.sh [NP] [extra gw_allreduce flags]   (default 4 ranks, 8 B to 4 MiB)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
np=${1:-4}
shift || true
"$root/scripts/setup.sh"
"$root/scripts/build.sh" "$root/build" -DGRADWIRE_BUILD_TESTS=OFF >/dev/null
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1  # Open MPI refuses root otherwise
mpirun --oversubscribe -np "$np" "$root/build/bench/osu/gw_allreduce" -m 8:4M -c "$@"
