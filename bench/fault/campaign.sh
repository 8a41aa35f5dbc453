#!/usr/bin/env bash
# Fault campaign (issue 15): TRIALS trials each of kill -9, SIGSTOP and early exit of a random
# rank at np NP while every rank allreduces in a loop (tests/fault/gw_fault_probe loop). For
# each trial: whether the job ended non-zero, whether the output names the faulty rank, and
# the seconds from the fault to the end of the job. Every job is bounded (timeout).
# Usage: bench/fault/campaign.sh BUILD_DIR [TRIALS=20] [NP=4] [GRADWIRE_TIMEOUT=5]
set -u
build=$1 trials=${2:-20} np=${3:-4}
export GRADWIRE_TIMEOUT=${4:-5} GRADWIRE_INIT_TIMEOUT=30
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
probe=$build/tests/fault/gw_fault_probe
limit=$((GRADWIRE_TIMEOUT * 4 + 20))
log=$(mktemp)
trap 'rm -f "$log"' EXIT
now() { date +%s.%N; }
echo "scenario trial rank exit named fault_to_end_s"
for scenario in kill stall exit; do
  for trial in $(seq 1 "$trials"); do
    victim=$(( (RANDOM % (np - 1)) + 1 ))  # not rank 0: its output is the one mpirun keeps first
    delay=$(awk -v r=$RANDOM 'BEGIN { printf "%.2f", 0.5 + (r % 150) / 100 }')
    if [ "$scenario" = exit ]; then
      export GW_FAULT_EXIT_RANK=$victim GW_FAULT_EXIT_AFTER_S=$delay
    else
      unset GW_FAULT_EXIT_RANK GW_FAULT_EXIT_AFTER_S
    fi
    timeout -k 5 "$limit" mpirun --oversubscribe -np "$np" "$probe" loop >"$log" 2>&1 &
    job=$!
    pid=""
    for _ in $(seq 1 300); do
      pid=$(sed -n "s/^gw_fault_probe: rank $victim pid \([0-9]*\)$/\1/p" "$log")
      [ -n "$pid" ] && [ "$(grep -c '^gw_fault_probe: rank .* pid' "$log")" -ge "$np" ] && break
      sleep 0.1
    done
    sleep "$delay"
    t_fault=$(now)
    case $scenario in
      kill) kill -9 "$pid" 2>/dev/null ;;
      stall) kill -STOP "$pid" 2>/dev/null ;;
      exit) t_fault=$(now) ;;  # the rank exits on its own about now
    esac
    wait "$job"
    rc=$?
    t_end=$(now)
    if [ "$scenario" = exit ]; then
      t_fault=$(sed -n "s/^gw_fault_probe: rank $victim exits early at \([0-9.]*\)$/\1/p" "$log")
      [ -n "$t_fault" ] || t_fault=$t_end
    fi
    [ "$scenario" = stall ] && kill -9 "$pid" 2>/dev/null  # never leave a stopped rank behind
    case $scenario in
      # mpirun names the rank (its "PID" is printed as 0 by Open MPI 4.1), or gradwire does.
      kill) re="process rank $victim with PID [0-9]+ .*signal 9|rank\\(s\\) $victim on this host have exited" ;;
      stall) re="rank\\(s\\) $victim on this host are stopped" ;;
      exit) re="rank\\(s\\) $victim on this host have exited|Process name: \\[\\[[0-9]+,[0-9]+\\],$victim\\]" ;;
    esac
    named=no
    grep -Eq "$re" "$log" && named=yes
    awk -v s="$scenario" -v t="$trial" -v r="$victim" -v rc="$rc" -v n="$named" \
        -v a="$t_fault" -v b="$t_end" 'BEGIN { printf "%s %d %d %d %s %.2f\n", s, t, r, rc, n, b - a }'
  done
done
