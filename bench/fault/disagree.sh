#!/usr/bin/env bash
# The disagreement table (issue 15): each case at np NP, without and with checked mode; per
# case, what each rank got. Bounded: GRADWIRE_TIMEOUT=3 with the return policy, and timeout.
# Usage: bench/fault/disagree.sh BUILD_DIR [NP=4]
set -u
build=$1 np=${2:-4}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 GRADWIRE_TIMEOUT=3
for check in 0 1; do
  for c in f32-vs-i32 f32-vs-f16 f32-vs-f64 sum-vs-max root0-vs-root1 count7-vs-8 \
           count65537-vs-65538 icount65537-vs-65538 plan-vs-dense; do
    start=$(date +%s.%N)
    out=$(GRADWIRE_CHECK=$check timeout -k 5 30 mpirun --oversubscribe -np "$np" \
          "$build/bench/gw_disagree" "$c" 2>&1)
    rc=$?
    t=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    echo "== check=$check case=$c exit=$rc seconds=$t"
    echo "$out" | grep '^gw_disagree' | sort -k4n | cut -c1-240
  done
done
