#!/usr/bin/env bash
# Installs gradwire into a temporary prefix and uses it the way an outside project would:
# builds examples/cpp_allreduce and examples/c_allreduce with find_package(gradwire), runs
# each under mpirun -np 2, builds the C example once more with plain pkg-config and runs it,
# and compiles every installed public header on its own. Exits non-zero on any failure.
#
#   scripts/check_install.sh [BUILD_DIR [CMAKE_ARGS...]]
#
# BUILD_DIR with a CMakeCache.txt is reused as is (only the two libraries are brought up to
# date), which is how CTest calls it. A BUILD_DIR without one is configured there with
# CMAKE_ARGS; no BUILD_DIR configures a throwaway build (tests, benchmarks and CUDA off, for
# speed; CMAKE_ARGS override that).
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
JOBS="${GRADWIRE_JOBS:-2}"
NP="${GRADWIRE_CHECK_NP:-2}"
# Open MPI refuses root (containers, CI) without both variables; --oversubscribe lets
# 2 ranks run on a 1-core machine.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPIRUN=(timeout 120 mpirun --oversubscribe -np "$NP")

TMP="$(mktemp -d "${TMPDIR:-/tmp}/gradwire-install.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
PREFIX="$TMP/prefix"
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)

step() { printf '\n== check_install: %s\n' "$*"; }

BUILD="${1:-}"
[[ $# -gt 0 ]] && shift
if [[ -z "$BUILD" ]]; then
  BUILD="$TMP/build"
  step "configuring a throwaway build in $BUILD"
  cmake -S "$SRC" -B "$BUILD" "${GEN[@]}" -DGRADWIRE_BUILD_TESTS=OFF \
    -DGRADWIRE_BUILD_BENCH=OFF -DGRADWIRE_CUDA=OFF "$@" >"$TMP/configure.log" ||
    { cat "$TMP/configure.log"; exit 1; }
elif [[ ! -f "$BUILD/CMakeCache.txt" ]]; then
  step "configuring $BUILD"
  cmake -S "$SRC" -B "$BUILD" "${GEN[@]}" "$@"
fi
BUILD="$(cd "$BUILD" && pwd)"

step "building the libraries in $BUILD"
cmake --build "$BUILD" -j "$JOBS" --target gradwire_codec gradwire

step "installing into $PREFIX"
cmake --install "$BUILD" --prefix "$PREFIX" >"$TMP/install.log" ||
  { cat "$TMP/install.log"; exit 1; }

# Flags for compiling against the install by hand; MPI's headers as system headers, the
# way CMake's imported targets pass them, so that only gradwire's own code must be clean.
PC_FILE="$(find "$PREFIX" -name gradwire.pc -print -quit)"
[[ -n "$PC_FILE" ]] || { echo "check_install: gradwire.pc was not installed" >&2; exit 1; }
PKG_CONFIG_PATH="$(dirname "$PC_FILE")${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
export PKG_CONFIG_PATH
LIBDIR="$(pkg-config --variable=libdir gradwire)"
INCDIR="$(pkg-config --variable=includedir gradwire)"
MPI_CFLAGS="$(pkg-config --cflags gradwire | tr ' ' '\n' | { grep -v -x -- "-I$INCDIR" || true; } |
  sed 's/^-I/-isystem /' | tr '\n' ' ')"
WARN=(-Wall -Wextra -Werror -pedantic)

step "compiling each installed header alone"
for h in "$INCDIR"/gradwire/*.hpp "$INCDIR"/gradwire/*.h; do
  name="gradwire/$(basename "$h")"
  # shellcheck disable=SC2086  # MPI_CFLAGS is a list of flags
  printf '#include <%s>\n' "$name" |
    c++ -std=c++20 "${WARN[@]}" -fsyntax-only -x c++ -I"$INCDIR" $MPI_CFLAGS - ||
    { echo "check_install: $name does not compile on its own as C++" >&2; exit 1; }
done
# shellcheck disable=SC2086
printf '#include <gradwire/gradwire.h>\n' |
  cc -std=c11 "${WARN[@]}" -fsyntax-only -x c -I"$INCDIR" $MPI_CFLAGS - ||
  { echo "check_install: gradwire.h does not compile as C11" >&2; exit 1; }

for ex in cpp_allreduce c_allreduce; do
  step "building examples/$ex against the install"
  cmake --no-warn-unused-cli -S "$SRC/examples/$ex" -B "$TMP/$ex" "${GEN[@]}" \
    -DCMAKE_PREFIX_PATH="$PREFIX" \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_FLAGS="${WARN[*]}" -DCMAKE_CXX_FLAGS="${WARN[*]}" \
    >"$TMP/$ex.configure.log" || { cat "$TMP/$ex.configure.log"; exit 1; }
  cmake --build "$TMP/$ex" -j "$JOBS"
  step "running $ex on $NP ranks"
  "${MPIRUN[@]}" "$TMP/$ex/$ex"
done

step "building examples/c_allreduce with plain pkg-config"
# shellcheck disable=SC2046  # pkg-config's output is a list of flags
cc -std=c11 "${WARN[@]}" "$SRC/examples/c_allreduce/main.c" -o "$TMP/c_allreduce_pc" \
  $(pkg-config --cflags --libs gradwire)
step "running it on $NP ranks"
LD_LIBRARY_PATH="$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "${MPIRUN[@]}" \
  "$TMP/c_allreduce_pc"

step "OK: install, find_package, pkg-config and both examples work"
