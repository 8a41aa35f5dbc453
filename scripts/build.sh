#!/usr/bin/env bash
# Configures and builds one tree, through the compiler cache (scripts/compiler_cache.sh).
#   scripts/build.sh BUILD_DIR [CMAKE_ARGS...] [-- TARGET...]
# With targets after --, builds only those (a test stage builds what its tests run).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/compiler_cache.sh"
build=$1
shift
args=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do args+=("$1"); shift; done
[ $# -gt 0 ] && shift
targets=()
for t in "$@"; do targets+=(--target "$t"); done
mkdir -p "$build"
log=$build/configure.log
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release "${gw_launchers[@]}" "${args[@]}" >"$log" 2>&1 || { cat "$log"; exit 1; }
grep -E "^-- gradwire:" "$log" || true
cmake --build "$build" -j "$(nproc)" "${targets[@]}"
