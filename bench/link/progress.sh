# shellcheck shell=bash
# Progress of the sweeps (sourced by bench/link/standard_comparison.sh): the benchmarks, run
# with GW_BENCH_PROGRESS=1, print "gw-progress: ..." lines (bench/osu/progress.hpp); this
# filter shows them on stderr when stderr is a terminal, prefixed with where the sweep is,
# and keeps them out of stdout and the log, so the OSU-style tables stay as parsers read them.
#
#   cmd 2>&1 | gw_progress_filter "link 2/3 1gbit" LOG
gw_progress_filter() {
  local where=$1 log=$2 line tty=0
  [ -t 2 ] && tty=1
  while IFS= read -r line; do
    case "$line" in
      gw-progress:*)
        if [ $tty = 1 ]; then printf '\r%s: %s\033[K' "$where" "${line#gw-progress: }" >&2; fi ;;
      *)
        if [ $tty = 1 ]; then printf '\r\033[K' >&2; fi
        printf '%s\n' "$line"
        printf '%s\n' "$line" >>"$log" ;;
    esac
  done
  return 0
}
