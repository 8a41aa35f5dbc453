#!/usr/bin/env bash
# CTest smoke test of one osu-style binary: 2 ranks, tiny sizes, validated (-c), full
# statistics (-f) and JSON; checks the shared output format and the exit status.
#   smoke.sh MPIEXEC BINARY [extra flags]
# Exit 77 (skip) passes through: e.g. -d cuda without a GPU.
set -u
mpiexec=$1; bin=$2; shift 2
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# No network between hosts in a test: shared memory and self only.
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none
out=$(mktemp); json=$(mktemp)
trap 'rm -f "$out" "$json"' EXIT
timeout 60 "$mpiexec" --oversubscribe -np 2 "$bin" -m 8:64K -i 4 -x 1 -c -f --json "$json" \
    --timeout 30 "$@" >"$out" 2>&1
rc=$?
cat "$out"
if [ $rc -eq 77 ]; then
  grep -q "skipped" "$out" || { echo "smoke: exit 77 without a 'skipped' reason"; exit 1; }
  exit 77
fi
[ $rc -eq 0 ] || { echo "smoke: $bin exited $rc"; exit 1; }
fail() { echo "smoke: $*"; exit 1; }
grep -q "^# Backend: .* Memory: .* Datatype: .* Op: " "$out" || fail "header line missing"
grep -q "^# Ranks: 2 " "$out" || fail "ranks line missing"
grep -q "^# Size .*\(Avg Latency(us)\|Bandwidth (MB/s)\).*busbw(GB/s).*Wire(B).*vs_base.*Validation" "$out" \
  || fail "column titles missing"
grep -q "^# Size .*vs_base *p50(us) *p95(us) *p99(us) *CV(%)" "$out" || fail "percentile columns missing"
grep -q "^# Avg bus bandwidth" "$out" || fail "footer missing"
# Rows: Size and a number first (what an OSU parser reads), Pass in the validation column.
rows=$(grep -c "^[0-9]" "$out")
[ "$rows" -ge 5 ] || fail "expected >= 5 rows, got $rows"
awk '/^[0-9]/ { if ($2 !~ /^[0-9.]+$/) bad = 1 } END { exit bad }' "$out" || fail "non-numeric latency"
if grep "^[0-9]" "$out" | grep -q "Fail"; then fail "validation failed"; fi
[ "$(wc -l <"$json")" -eq "$rows" ] || fail "JSON records != rows"
# Per-call spread under nccl-tests' names: numbers, ordered p50 <= p95 <= p99, cv >= 0.
awk '{
  for (k = 1; k <= 4; k++) v[k] = "";
  if (match($0, /"p50_us":[0-9.e+-]+/)) v[1] = substr($0, RSTART + 9, RLENGTH - 9) + 0;
  if (match($0, /"p95_us":[0-9.e+-]+/)) v[2] = substr($0, RSTART + 9, RLENGTH - 9) + 0;
  if (match($0, /"p99_us":[0-9.e+-]+/)) v[3] = substr($0, RSTART + 9, RLENGTH - 9) + 0;
  if (match($0, /"cv_pct":[0-9.e+-]+/)) v[4] = substr($0, RSTART + 9, RLENGTH - 9) + 0;
  if (v[1] == "" || v[2] == "" || v[3] == "" || v[4] == "" || v[1] > v[2] || v[2] > v[3] || v[4] < 0) bad = 1
} END { exit bad }' "$json" || fail "JSON p50_us/p95_us/p99_us/cv_pct missing or out of order"
# A lossy codec's validation column is its error, a number.
if grep "^[0-9]" "$out" | awk '$NF != "none"' | grep -q .; then
  grep "^[0-9]" "$out" | awk '$NF != "none" && $(NF-1) !~ /^[0-9.e+-]+$/ { bad = 1 } END { exit bad }' \
    || fail "lossy rows without an error figure"
fi
# --control: one row per size, the baseline itself.
case " $* " in *" --control "*)
  sizes=$(grep -o '"size":[0-9]*' "$json" | sort -u | wc -l)
  controls=$(grep -c '"codec":"control","algorithm":"MPI_' "$json")
  [ "$controls" -eq "$sizes" ] || fail "$controls control rows (the baseline's algorithm) for $sizes sizes"
esac
echo "smoke: ok ($rows rows)"
