#!/usr/bin/env bash
# Sourced by the table scripts: installs gradwire from build tree $1 into $TMP/prefix and
# builds this example against the installed package, as a user would; sets FM_BIN.
# Needs SRC (the repository root) and TMP (a scratch folder) set by the caller.
fm_build_against_install() {
  local build gen=()
  build="$(cd "${1:-$SRC/build}" && pwd)"
  command -v ninja >/dev/null && gen=(-G Ninja)
  cmake --build "$build" -j2 --target gradwire_codec gradwire >/dev/null
  cmake --install "$build" --prefix "$TMP/prefix" >/dev/null
  cmake -S "$SRC/examples/fashion_mnist" -B "$TMP/ex" "${gen[@]}" \
    -DCMAKE_PREFIX_PATH="$TMP/prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$TMP/ex" -j2 >/dev/null
  FM_BIN="$TMP/ex/fashion_mnist"
}
