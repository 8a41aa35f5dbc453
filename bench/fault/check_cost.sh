#!/usr/bin/env bash
# Cost of checked mode (GRADWIRE_CHECK=1) on the dense allreduce at small sizes: ROUNDS
# alternating runs of gw_allreduce without and with it; prints per size the median latency
# of each and of the same-run MPI_Allreduce baseline.
# Usage: bench/fault/check_cost.sh BUILD_DIR [NP=4] [ROUNDS=3]
set -u
build=$1 np=${2:-4} rounds=${3:-3}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for r in $(seq 1 "$rounds"); do
  for chk in 0 1; do
    GRADWIRE_CHECK=$chk timeout 300 mpirun --oversubscribe -np "$np" \
      "$build/bench/osu/gw_allreduce" -m 8:4K -i 3000 -x 300 2>/dev/null |
      awk -v c="$chk" '$1 ~ /^[0-9]+$/ { print c, $1, $2, $6 }' >>"$out"
  done
done
echo "size_B plain_us checked_us baseline_us checked/plain (medians of $rounds rounds, np $np)"
awk '{ k = $2; if ($1 == 0) { p[k] = p[k] " " $3; b[k] = b[k] " " $4 } else { q[k] = q[k] " " $3 } }
     function med(s,   a, n, i, j, t) { n = split(s, a, " ");
       for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
       return a[int((n + 1) / 2)] }
     END { for (k in p) printf "%d %.2f %.2f %.2f %.2f\n", k, med(p[k]), med(q[k]), med(b[k]), med(q[k]) / med(p[k]) }' "$out" | sort -n
