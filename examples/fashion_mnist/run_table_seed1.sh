#!/usr/bin/env bash
# Produces the accuracy-against-bytes table of bench/results/fashion-mnist.md (issue 6):
# trains examples/fashion_mnist at NP ranks (default 4) for EPOCHS epochs (default 10) with
# every codec configuration below, same seed, and prints a Markdown table; each run's full
# output (one line per epoch) is kept in LOG_DIR.
#
#   examples/fashion_mnist/run_table.sh [BUILD_DIR]      # BUILD_DIR: a configured gradwire build
#
# Environment: FM_BIN=path/to/fashion_mnist skips the install-and-build step; NP, EPOCHS,
# SEED, BATCH (per rank), LR, EXTRA (more flags for every run), LOG_DIR
# (default bench/results/fashion-mnist), ONLY="name ..." runs a subset of the rows.
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
NP="${NP:-4}" EPOCHS="${EPOCHS:-10}" SEED="${SEED:-1}" BATCH="${BATCH:-32}" LR="${LR:-0.05}"
EXTRA="${EXTRA:-}"
LOG_DIR="${LOG_DIR:-$SRC/bench/results/fashion-mnist}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OPENBLAS_NUM_THREADS=1  # NP ranks share the cores already

# name | flags. Same seed everywhere; only the gradient exchange differs.
ROWS=(
  "none|--codec none"
  "fp16|--codec fp16"
  "q8|--codec q8 --ef on"
  "q4|--codec q4 --ef on"
  "q2|--codec q2 --ef on"
  "sign+ef|--codec sign --ef on"
  "sign|--codec sign --ef off"
  "topk+ef|--codec topk:0.01 --ef on"
  "topk|--codec topk:0.01 --ef off"
  "q4-shared-grid+ef|--codec q4 --algo shared-grid --ef on"
  # Error feedback with sign under heavy-ball momentum diverges at the common lr (see
  # bench/results/fashion-mnist.md); without momentum it helps. Same seed, lr 0.2.
  "sign+ef-mom0|--codec sign --ef on --momentum 0 --lr 0.2"
  "sign-mom0|--codec sign --ef off --momentum 0 --lr 0.2"
  "none-mom0|--codec none --momentum 0 --lr 0.2"
  "none-seed2|--codec none --seed 2"
  "none-seed3|--codec none --seed 3"
)

TMP="$(mktemp -d "${TMPDIR:-/tmp}/gradwire-fm-table.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
if [[ -z "${FM_BIN:-}" ]]; then
  # shellcheck source=build_against_install.sh
  source "$SRC/examples/fashion_mnist/build_against_install.sh"
  fm_build_against_install "${1:-}"
fi
mkdir -p "$LOG_DIR"

COMMON=(--epochs "$EPOCHS" --batch "$BATCH" --lr "$LR" --seed "$SEED")
# shellcheck disable=SC2206  # EXTRA is a list of flags
COMMON+=($EXTRA)
echo "# $(date -u +%FT%TZ) $(uname -n), $NP ranks: fashion_mnist ${COMMON[*]} <row flags>" >&2
total=0 n=0 t_all=$SECONDS
for row in "${ROWS[@]}"; do
  name="${row%%|*}"
  if [[ -z "${ONLY:-}" || " $ONLY " == *" $name "* ]]; then total=$((total + 1)); fi
done
for row in "${ROWS[@]}"; do
  name="${row%%|*}" flags="${row#*|}"
  if [[ -n "${ONLY:-}" && " $ONLY " != *" $name "* ]]; then continue; fi
  n=$((n + 1))
  # Where the table is (n of N, the time left at the mean run time so far), on stderr only.
  if [[ $n -gt 1 ]]; then eta="~$(( (SECONDS - t_all) * (total - n + 1) / (n - 1) )) s left"; else eta="time left unknown"; fi
  echo "# row $n of $total: $name ($eta)" >&2
  log="$LOG_DIR/$name.log"
  # shellcheck disable=SC2086  # flags is a list
  echo "# mpirun --oversubscribe -np $NP fashion_mnist ${COMMON[*]} $flags" | tee "$log" >&2
  start=$SECONDS
  # Later flags win, so a row's --seed overrides the common one. A failed run is reported in
  # its row and the table goes on.
  # shellcheck disable=SC2086
  timeout 1800 mpirun --oversubscribe -np "$NP" "$FM_BIN" "${COMMON[@]}" $flags >>"$log" 2>&1 ||
    echo "# exit status $? after $((SECONDS - start)) s" >>"$log"
  echo "#   $name: $((SECONDS - start)) s wall; $(grep '^RESULT' "$log" || tail -1 "$log")" >&2
done

# The Markdown table, from the logs in LOG_DIR (so rows re-run with ONLY join the others):
# accuracy and wire bytes relative to the row named none.
for row in "${ROWS[@]}"; do
  name="${row%%|*}" flags="${row#*|}" log="$LOG_DIR/${row%%|*}.log"
  [[ -f "$log" ]] || continue
  res="$(grep '^RESULT' "$log" || true)"
  if [[ -z "$res" ]]; then  # the first error line of the run, for the table
    res="FAILED $(grep -m1 -E 'rank [0-9]+: ' "$log" | sed 's/.*rank [0-9]*: //' | tr '|' '/')"
  fi
  echo "$name|$flags|$res"
done | awk -F'|' '
  function get(s, k,   i, n, a, kv) {
    n = split(s, a, " ")
    for (i = 1; i <= n; ++i) { split(a[i], kv, "="); if (kv[1] == k) return kv[2] }
    return ""
  }
  { name[NR] = $1; flags[NR] = $2; res[NR] = $3
    if ($1 == "none") { acc0 = get($3, "test_acc"); wire0 = get($3, "wire_B_per_step") } }
  END {
    print "| run | flags | algorithm | test acc | vs none (points) | wire B/step/rank | vs none | comm s (total) | train s (total) | final test loss |"
    print "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"
    for (r = 1; r <= NR; ++r) {
      if (res[r] ~ /^FAILED/) { printf "| %s | `%s` | | %s | | | | | | |\n", name[r], flags[r], res[r]; continue }
      acc = get(res[r], "test_acc"); wire = get(res[r], "wire_B_per_step")
      printf "| %s | `%s` | %s | %.4f | %+.2f | %d | %.3fx | %.1f | %.1f | %.4f |\n", name[r], flags[r],
        get(res[r], "alg_used"), acc, (acc - acc0) * 100, wire, wire / (wire0 ? wire0 : 1),
        get(res[r], "comm_s"), get(res[r], "train_s"), get(res[r], "test_loss")
    }
  }'
