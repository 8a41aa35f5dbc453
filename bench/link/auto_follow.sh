#!/usr/bin/env bash
# "auto" following a link that changes under a running plan (bench/results/auto-never-loses.md):
# gw_auto_follow runs one "auto" plan back to back in an unshaped emulated-link namespace
# (emulated_link.sh --rate none: TCP over the namespace's loopback); after --shape-at seconds
# the namespace's loopback is shaped to --rate (tbf), after --unshape-at seconds unshaped
# again. The log gives each run's algorithm and time beside the epoch times of both changes.
#
#   bench/link/auto_follow.sh [--build DIR] [--np 4] [-n ELEMENTS] [--codec q8] [--rate 1gbit]
#                             [--shape-at 30] [--unshape-at 60] [--seconds 90]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$root/build-cpu np=4 n=1048576 codec=q8 rate=1gbit shape_at=30 unshape_at=60 seconds=90
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --np) np=$2; shift 2 ;;
    -n) n=$2; shift 2 ;;
    --codec) codec=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --shape-at) shape_at=$2; shift 2 ;;
    --unshape-at) unshape_at=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "auto_follow.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
ns="gwfollow$$"
echo "# $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)"
"$root/bench/link/emulated_link.sh" --rate none --np "$np" --name "$ns" -- \
  "$build/bench/gw_auto_follow" -n "$n" --codec "$codec" --seconds "$seconds" &
job=$!
# The namespace exists once emulated_link.sh has made it; the clock starts then.
for _ in $(seq 100); do ip netns list | grep -qw "$ns" && break; sleep 0.1; done
sleep "$shape_at"
ip netns exec "$ns" tc qdisc add dev lo root tbf rate "$rate" burst 512kb limit 256mb
echo "# $(date +%s.%N | cut -c1-14) shaped: $(ip netns exec "$ns" tc qdisc show dev lo | head -1)"
sleep $((unshape_at - shape_at))
ip netns exec "$ns" tc qdisc del dev lo root
echo "# $(date +%s.%N | cut -c1-14) unshaped"
wait "$job"
echo "# $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)"
