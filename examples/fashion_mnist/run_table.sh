#!/usr/bin/env bash
# Accuracy against bytes on the wire over seeds and rank counts (issue 14): trains
# examples/fashion_mnist for every row below at each rank count in NPS and each seed in
# SEEDS, keeps one log per run in LOG_DIR/<row>/np<N>-seed<S>.log (a run whose log already
# has its RESULT line is not run again, so the script resumes), then prints the Markdown
# table of mean +- standard deviation per (row, rank count) and draws test accuracy against
# wire bytes per step (LOG_DIR.png, with gnuplot).
#
#   examples/fashion_mnist/run_table.sh [BUILD_DIR]     # BUILD_DIR: a configured gradwire build
#
# Environment: FM_BIN=path/to/fashion_mnist skips the install-and-build step; NPS ("4 2 8"),
# SEEDS ("1 2 3"), EPOCHS (10), EPOCHS_8 (epochs at 8 ranks; default EPOCHS), BATCH (32 per
# rank), LR (0.05), EXTRA (more flags for every run), JOBS (runs at once, 2), ONLY="row ..."
# (a subset), LOG_DIR
# (bench/results/fashion-mnist-seeds), SUMMARY_ONLY=1 (no runs: the table of what is there).
# The previous one-seed table (bench/results/fashion-mnist.md) is run_table_seed1.sh.
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
NPS="${NPS:-4 2 8}" SEEDS="${SEEDS:-1 2 3}" EPOCHS="${EPOCHS:-10}" EPOCHS_8="${EPOCHS_8:-$EPOCHS}"
BATCH="${BATCH:-32}" LR="${LR:-0.05}" JOBS="${JOBS:-2}" EXTRA="${EXTRA:-}"
LOG_DIR="${LOG_DIR:-$SRC/bench/results/fashion-mnist-seeds}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OPENBLAS_NUM_THREADS=1  # the ranks share the cores already

# name | flags. Momentum 0.9 everywhere (the trainer's default): in the optimizer, or, with
# --plan-momentum on, in the plan (DGC momentum correction; the optimizer then adds none).
# The compressed rows name their algorithm: under `auto` the cost model may send the buffer
# dense (it did for q8, q4 and sign at 2 ranks on the loaded 2-core box), which would
# measure none again. At 4 ranks auto had chosen these same algorithms (the logs' alg_used).
ROWS=(
  "none|--codec none"
  "q8|--codec q8 --ef on --algo sra"
  "q4|--codec q4 --ef on --algo sra"
  "topk1%-dgc|--codec topk:0.01 --ef on --plan-momentum on --warmup-epochs 1 --algo sparse-allgather"
  "topk0.1%-dgc|--codec topk:0.001 --ef on --plan-momentum on --warmup-epochs 1 --algo sparse-allgather"
  "sign+ef-out20|--codec sign:outliers=20 --ef on --algo sra"
  "powersgd-r4|--codec none --algo powersgd --powersgd-rank 4"
  "powersgd-r1|--codec none --algo powersgd --powersgd-rank 1"
  # References: the rows of the one-seed table these replace.
  "topk1%-ef|--codec topk:0.01 --ef on"
  "sign+ef|--codec sign --ef on"
  "sign+ef-planmom|--codec sign --ef on --plan-momentum on"
  "sign+ef-mom0-lr0.5|--codec sign --ef on --momentum 0 --lr 0.5"
)

selected() { [[ -z "${ONLY:-}" || " $ONLY " == *" $1 "* ]]; }

if [[ -z "${SUMMARY_ONLY:-}" ]]; then
  TMP="$(mktemp -d "${TMPDIR:-/tmp}/gradwire-fm-seeds.XXXXXX")"
  trap 'rm -rf "$TMP"' EXIT
  if [[ -z "${FM_BIN:-}" ]]; then
    # shellcheck source=build_against_install.sh
    source "$SRC/examples/fashion_mnist/build_against_install.sh"
    fm_build_against_install "${1:-}"
  fi
  echo "# $(date -u +%FT%TZ) $(uname -n): NPS=$NPS SEEDS=$SEEDS EPOCHS=$EPOCHS EPOCHS_8=$EPOCHS_8" \
       "BATCH=$BATCH LR=$LR JOBS=$JOBS; load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  # One line per run, rank counts in the order given: "name|np|seed|flags".
  for np in $NPS; do
    for seed in $SEEDS; do
      for row in "${ROWS[@]}"; do
        name="${row%%|*}"
        selected "$name" && echo "$name|$np|$seed|${row#*|}"
      done
    done
  done >"$TMP/runs"
  run_one() {
    local name="${1%%|*}" rest="${1#*|}"
    local np="${rest%%|*}"; rest="${rest#*|}"
    local seed="${rest%%|*}" flags="${rest#*|}"
    local epochs="$EPOCHS"
    [[ "$np" == 8 ]] && epochs="$EPOCHS_8"
    local log="$LOG_DIR/$name/np$np-seed$seed.log"
    mkdir -p "$LOG_DIR/$name"
    if [[ -f "$log" ]] && grep -q '^RESULT' "$log"; then echo >>"$TMP/done"; return 0; fi
    echo "#   starting $name np=$np seed=$seed ($(( $(wc -l <"$TMP/done") + 1 )) of $(wc -l <"$TMP/runs"))" >&2
    local start=$SECONDS
    # Later flags win: a row's --momentum/--lr override the common ones.
    # shellcheck disable=SC2086
    { echo "# mpirun --oversubscribe -np $np fashion_mnist --epochs $epochs --batch $BATCH" \
           "--lr $LR --seed $seed $EXTRA $flags  ($(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg))"
      timeout 3600 mpirun --oversubscribe -np "$np" "$FM_BIN" --epochs "$epochs" --batch "$BATCH" \
        --lr "$LR" --seed "$seed" $EXTRA $flags 2>&1 || echo "# exit status $?"
      echo "# wall $((SECONDS - start)) s"; } >"$log"
    echo >>"$TMP/done"
    echo "$((SECONDS - start))" >>"$TMP/ran"
    # n of N and the time left: the mean wall time of the runs done so far, JOBS at once.
    local n total eta
    n=$(wc -l <"$TMP/done") total=$(wc -l <"$TMP/runs")
    eta=$(awk -v left=$((total - n)) -v jobs="$JOBS" '{ s += $1 } END { printf "%.0f", NR ? s / NR * left / jobs : 0 }' "$TMP/ran")
    echo "#   $name np=$np seed=$seed: $((SECONDS - start)) s; $(grep '^RESULT' "$log" | grep -o 'test_acc=[0-9.]*' || echo FAILED); $n of $total done, ~${eta} s left" >&2
  }
  export -f run_one
  : >"$TMP/done"
  : >"$TMP/ran"
  export FM_BIN EPOCHS EPOCHS_8 BATCH LR LOG_DIR EXTRA TMP JOBS
  tr '\n' '\0' <"$TMP/runs" | xargs -0 -P "$JOBS" -I{} bash -c 'run_one "$1"' _ {}
fi

# The table: per row and rank count, mean +- sample standard deviation over the seeds that
# finished, against none at the same rank count and seeds.
for row in "${ROWS[@]}"; do
  name="${row%%|*}"
  selected "$name" || [[ "$name" == none ]] || continue
  for log in "$LOG_DIR/$name"/np*-seed*.log; do
    [[ -f "$log" ]] || continue
    base="$(basename "$log" .log)"
    np="${base#np}"; np="${np%%-*}"; seed="${base##*seed}"
    res="$(grep '^RESULT' "$log" || true)"
    if [[ -z "$res" ]]; then
      grep -q '^# wall' "$log" || continue  # still running
      res="FAILED"
    fi
    echo "$name|${row#*|}|$np|$seed|$res"
  done
done | awk -F'|' -v png="$LOG_DIR.dat" '
  function get(s, k,   i, n, a, kv) {
    n = split(s, a, " ")
    for (i = 1; i <= n; ++i) { split(a[i], kv, "="); if (kv[1] == k) return kv[2] }
    return ""
  }
  {
    key = $1 SUBSEP $3
    if (!(key in seen)) { seen[key] = 1; order[++nk] = key; flags[key] = $2 }
    if ($5 == "FAILED") { failed[key]++; next }
    acc = get($5, "test_acc"); wire = get($5, "wire_B_per_step"); ep[key] = get($5, "epochs")
    n[key]++; s[key] += acc; ss[key] += acc * acc; w[key] += wire
    a[key, $4] = acc
  }
  END {
    print "| run | flags | ranks | epochs | seeds | test acc (mean ± std) | vs none, same seeds (points) | wire B/step/rank | vs none | failed |"
    print "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for (i = 1; i <= nk; ++i) {
      key = order[i]; split(key, kk, SUBSEP); name = kk[1]; np = kk[2]
      m = n[key] ? s[key] / n[key] : 0
      sd = n[key] > 1 ? sqrt((ss[key] - n[key] * m * m) / (n[key] - 1)) : 0
      if (sd != sd || sd < 0) sd = 0
      # none at the same rank count over the same seeds
      nk0 = ("none" SUBSEP np); d = 0; c = 0
      for (seed = 1; seed <= 100; ++seed)
        if (((key, seed) in a) && ((nk0, seed) in a)) { d += a[key, seed] - a[nk0, seed]; c++ }
      wire = n[key] ? w[key] / n[key] : 0; wire0 = n[nk0] ? w[nk0] / n[nk0] : 0
      printf "| %s | `%s` | %s | %s | %d | %s | %s | %s | %s | %d |\n", name, flags[key], np,
        (key in ep) ? ep[key] : "-", n[key],
        n[key] ? sprintf("%.4f ± %.4f", m, sd) : "-", c ? sprintf("%+.2f", 100 * d / c) : "-",
        n[key] ? sprintf("%.0f", wire) : "-", (n[key] && wire0) ? sprintf("%.4fx", wire / wire0) : "-",
        failed[key] + 0
      if (n[key]) printf "%s %s %.1f %.6f %.6f\n", name, np, wire, m, sd > png
    }
  }'

# The plot: accuracy against bytes per step (log scale), one point per row and rank count.
if [[ -s "$LOG_DIR.dat" ]] && command -v gnuplot >/dev/null; then
  gnuplot <<GP
set terminal pngcairo size 1000,640 noenhanced
set output "$LOG_DIR.png"
set title "Fashion-MNIST MLP, $EPOCHS epochs (8 ranks: $EPOCHS_8): test accuracy (mean ± std over seeds) vs bytes sent per step per rank"
set logscale x
set xlabel "wire bytes per step per rank (log)"
set ylabel "test accuracy"
set key bottom right
set grid
plot for [np in "2 4 8"] "$LOG_DIR.dat" using (\$2 == np + 0 ? \$3 : 1/0):4:5 with yerrorbars pt 7 title np." ranks", \
     "$LOG_DIR.dat" using 3:4:1 with labels offset 0,1 font ",8" notitle
GP
fi
