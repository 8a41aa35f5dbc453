#!/usr/bin/env bash
# Run an mpirun job over an emulated cluster link: a fresh network namespace whose loopback
# is shaped with tc (rate, delay), Open MPI forced onto TCP over that loopback. The namespace
# is removed afterwards, on failure and on Ctrl-C too.
#
#   bench/link/emulated_link.sh [--rate 1gbit|2.5gbit|none] [--delay 50us] [--np 4] \
#                               [--name NS] -- BINARY [ARGS...]
#
# --rate none runs unshaped TCP loopback (still TCP, still the namespace). The rate caps the
# namespace's one loopback device: every rank's traffic shares it, so it emulates a shared
# link (one switch port / one bus) of that rate, not a separate link per rank; byte-bound
# ratios (compressed vs dense) are the same either way. --delay is added to every packet,
# both directions (a round trip pays it twice). Needs root (ip netns, tc).
set -euo pipefail

rate=1gbit delay=50us np=4 name="gwlink$$"
while [ $# -gt 0 ]; do
  case "$1" in
    --rate) rate=$2; shift 2 ;;
    --delay) delay=$2; shift 2 ;;
    --np) np=$2; shift 2 ;;
    --name) name=$2; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "emulated_link.sh: unknown option $1 (see -h)" >&2; exit 2 ;;
  esac
done
[ $# -ge 1 ] || { echo "emulated_link.sh: no command after --" >&2; exit 2; }

if [ "$(id -u)" -ne 0 ]; then
  echo "emulated_link.sh: needs root: creating a network namespace (ip netns add) and shaping" \
       "it (tc qdisc) require CAP_NET_ADMIN. Run as root or with sudo." >&2
  exit 3
fi
for tool in ip tc mpirun; do
  command -v "$tool" >/dev/null || { echo "emulated_link.sh: '$tool' not found (apt-get install iproute2 openmpi-bin)" >&2; exit 3; }
done

cleanup() {
  local rc=$?
  # What the shaper did: bytes sent, drops (a drop costs TCP a retransmission timeout).
  if ip netns list 2>/dev/null | grep -qw "$name"; then
    echo "# Emulated link stats: $(ip netns exec "$name" tc -s qdisc show dev lo 2>/dev/null |
      sed -n 's/^ *Sent \(.*\)$/sent \1/p' | head -1)"
  fi
  # mpirun's daemons die with the job; anything left in the namespace is ours to end.
  for pid in $(ip netns pids "$name" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
  ip netns del "$name" 2>/dev/null || true
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ip netns add "$name"
ip -n "$name" link set lo up
# netem paces by bytes at `rate` and delays each packet. Kernels without sch_netem (some
# container hosts) get tbf: the rate alone, no added delay, said in the output.
shaped=""
if [ "$rate" != none ]; then
  if ip netns exec "$name" tc qdisc add dev lo root netem rate "$rate" delay "$delay" limit 100000 2>/dev/null; then
    shaped="netem rate $rate delay $delay"
  else
    # burst above lo's 64 KiB packets; a queue deep enough that the TCP windows of every
    # pair of ranks fit at once (with 16 MB, an all-to-all of 4 MB messages among 4 ranks
    # overflowed it, and each drop cost a retransmission timeout: that measured TCP, not the
    # link). The stats line at the end says whether anything dropped.
    ip netns exec "$name" tc qdisc add dev lo root tbf rate "$rate" burst 512kb limit 256mb
    shaped="tbf rate $rate (no added delay: this kernel has no sch_netem)"
  fi
elif [ "$delay" != 0 ] && [ "$delay" != 0us ]; then
  if ip netns exec "$name" tc qdisc add dev lo root netem delay "$delay" limit 100000 2>/dev/null; then
    shaped="netem delay $delay"
  else
    shaped="unshaped (no added delay: this kernel has no sch_netem)"
  fi
else
  shaped="unshaped"
fi
echo "# Emulated link: namespace $name, TCP over lo, $shaped; tc: $(ip netns exec "$name" tc qdisc show dev lo | head -1)"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# TCP over the namespace's loopback only: no shared memory (vader), no other interface.
ip netns exec "$name" mpirun --oversubscribe -np "$np" \
  --mca btl self,tcp --mca btl_tcp_if_include lo --mca pml ob1 \
  --mca oob_tcp_if_include lo "$@"
