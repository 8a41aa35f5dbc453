#!/usr/bin/env bash
# A/B of the dense path against its same-run MPI_Allreduce baseline: ROUNDS alternating runs
# of two gw_allreduce builds (e.g. before/after a change) at np NP, 1-16 MB; prints per build
# and size the median of gradwire's latency / the same run's MPI_Allreduce latency.
# Usage: bench/fault/dense_ab.sh OLD_GW_ALLREDUCE NEW_GW_ALLREDUCE [NP=4] [ROUNDS=5]
set -u
old=$1 new=$2 np=${3:-4} rounds=${4:-5}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for r in $(seq 1 "$rounds"); do
  for which in old new; do
    bin=$old; [ "$which" = new ] && bin=$new
    timeout 300 mpirun --oversubscribe -np "$np" "$bin" -m 1M:16M -i 50 -x 5 2>/dev/null |
      awk -v w="$which" '$1 ~ /^[0-9]+$/ { print w, $1, $2 / $6 }' >>"$out"
  done
done
echo "build size_B median(gw/MPI_Allreduce same run) over $rounds rounds, np $np"
awk '{ k = $1 " " $2; v[k] = v[k] " " $3 }
     END { for (k in v) { n = split(v[k], a, " ");
       for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
       printf "%s %.3f\n", k, a[int((n + 1) / 2)] } }' "$out" | sort -k1,1 -k2n
