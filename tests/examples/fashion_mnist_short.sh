#!/usr/bin/env bash
# The short version of examples/fashion_mnist, as CI runs it (issue 6):
#   1. installs BUILD_DIR's gradwire into a temporary prefix and builds the example against it
#      as an outside project (find_package(gradwire), OpenBLAS, zlib), warnings as errors;
#   2. a missing and a corrupt data file each end the run non-zero with a message naming
#      the file's path;
#   3. trains at 2 ranks for 1 epoch on the first 6000 training examples with --codec none,
#      then with --codec q8 (same seed), each evaluated on the whole test set, and checks:
#      the train loss falls (epoch 1 < 0.6 x the untrained model's), none reaches
#      test accuracy >= 0.70, every rank ends with the same weights, and
#      |acc(q8) - acc(none)| <= Q8_BOUND (0.02, two accuracy points).
#      Why 0.02: over seeds 1-5 and 7 this 1-epoch gap measured 0.01-0.44 points, while none's
#      own accuracy moves 1.3 points between seeds; q8's quantization noise is far below that.
#      At 10 epochs and 4 ranks q8 is +0.09 points (bench/results/fashion-mnist.md).
#   4. (issue 14) the same run with top-k 1 % + EF and the plan's DGC momentum
#      (--codec topk:0.01 --plan-momentum on) and with PowerSGD rank 4 (--algo powersgd):
#      each ends no more than LOSSY_BOUND (0.025, 2.5 points) below none, with identical weights.
#      Why 0.025: over seeds 1-5 and 7 this 1-epoch gap (none - x) measured -0.21 to 1.16
#      points for top-k + DGC momentum and 0.27 to 1.14 for PowerSGD r4 (2 ranks, 6000
#      examples, 2026-12-01, loaded box; bench/results/fashion-mnist-seeds.md); plain top-k
#      1 % + EF without the plan's momentum measured 1.39 to 4.43 (3.24 at seed 7), so the
#      bound fails if the DGC path stops doing its job at this seed.
#
#   tests/examples/fashion_mnist_short.sh [BUILD_DIR]
#
# BUILD_DIR defaults to build/; it must be configured (the libraries are brought up to date).
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="$(cd "${1:-$SRC/build}" && pwd)"
JOBS="${GRADWIRE_JOBS:-2}"
DATA="${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}"
Q8_BOUND=0.02
LOSSY_BOUND=0.025
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OPENBLAS_NUM_THREADS=1  # the ranks already share the cores
MPIRUN=(timeout 120 mpirun --oversubscribe -np 2)

TMP="$(mktemp -d "${TMPDIR:-/tmp}/gradwire-fm.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
fail() { echo "fashion_mnist_short: FAIL: $*" >&2; exit 1; }
step() { printf '\n== fashion_mnist_short [%3ds]: %s\n' "$SECONDS" "$*"; }
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)

[[ -f "$DATA/train-images-idx3-ubyte.gz" ]] ||
  fail "no Fashion-MNIST in $DATA: run scripts/setup.sh (Debian's dataset-fashion-mnist)"

step "installing $BUILD into $TMP/prefix"
cmake --build "$BUILD" -j "$JOBS" --target gradwire_codec gradwire >/dev/null
cmake --install "$BUILD" --prefix "$TMP/prefix" >"$TMP/install.log" ||
  { cat "$TMP/install.log"; fail "install"; }

step "building examples/fashion_mnist against the install"
cmake --no-warn-unused-cli -S "$SRC/examples/fashion_mnist" -B "$TMP/ex" "${GEN[@]}" \
  -DCMAKE_PREFIX_PATH="$TMP/prefix" -DCMAKE_BUILD_TYPE=Release >"$TMP/configure.log" ||
  { cat "$TMP/configure.log"; fail "configure"; }
cmake --build "$TMP/ex" -j "$JOBS" >"$TMP/build.log" || { cat "$TMP/build.log"; fail "build"; }
FM="$TMP/ex/fashion_mnist"

# expect_error DIR PATH_IN_MESSAGE WHAT: the run must fail and name the path.
expect_error() {
  local rc=0
  "${MPIRUN[@]}" "$FM" --data-dir "$1" --epochs 1 >"$TMP/err.out" 2>&1 || rc=$?
  [[ $rc -ne 0 ]] || fail "$3: the run exited 0"
  grep -qF "$2" "$TMP/err.out" || { cat "$TMP/err.out"; fail "$3: no message naming $2"; }
  echo "ok: $3 -> $(grep -F "$2" "$TMP/err.out" | head -1)"
}
step "a missing and a corrupt data file"
mkdir -p "$TMP/empty" "$TMP/corrupt"
expect_error "$TMP/empty" "$TMP/empty/train-images-idx3-ubyte.gz" "missing file"
cp "$DATA"/*.gz "$TMP/corrupt/"
head -c 100000 "$DATA/t10k-images-idx3-ubyte.gz" >"$TMP/corrupt/t10k-images-idx3-ubyte.gz"
expect_error "$TMP/corrupt" "$TMP/corrupt/t10k-images-idx3-ubyte.gz" "truncated file"
printf 'not an idx file' >"$TMP/corrupt/t10k-images-idx3-ubyte.gz"
expect_error "$TMP/corrupt" "$TMP/corrupt/t10k-images-idx3-ubyte.gz" "not an IDX file"

# train NAME [FLAGS...]: one short run (--codec NAME unless flags are given); prints its
# output, leaves it in $TMP/NAME.out
train() {
  local name="$1"
  shift
  # q8 through sra: "auto" asks the cost model, which may choose dense on this host, and
  # then q8 would not be what is tested.
  [[ $# -gt 0 ]] || { set -- --codec "$name"; [[ $name == none ]] || set -- "$@" --algo sra; }
  step "2 ranks, 1 epoch, 6000 examples, $*"
  "${MPIRUN[@]}" "$FM" "$@" --epochs 1 --train-subset 6000 --batch 32 --lr 0.05 \
    --seed 7 | tee "$TMP/$name.out" || fail "$*: the run failed"
}
field() {  # field FILE EPOCH NAME: the value after NAME on that epoch's line
  awk -v e="$2" -v k="$3" '$1 == "epoch" && $2 + 0 == e { for (i = 3; i < NF; ++i) if ($i == k) print $(i + 1) }' "$1"
}
train none
train q8
train topk-dgc --codec topk:0.01 --ef on --plan-momentum on
train powersgd --codec none --algo powersgd --powersgd-rank 4

l0=$(field "$TMP/none.out" 0 train_loss)
l1=$(field "$TMP/none.out" 1 train_loss)
acc_none=$(field "$TMP/none.out" 1 test_acc)
acc_q8=$(field "$TMP/q8.out" 1 test_acc)
l1_q8=$(field "$TMP/q8.out" 1 train_loss)
[[ -n "$l0" && -n "$l1" && -n "$acc_none" && -n "$acc_q8" ]] || fail "could not read the epoch lines"
grep -q 'weights_identical=yes' "$TMP/none.out" || fail "none: ranks ended with different weights"
grep -q 'weights_identical=yes' "$TMP/q8.out" || fail "q8: ranks ended with different weights"

step "checks"
awk -v a="$l0" -v b="$l1" 'BEGIN { exit !(b < 0.6 * a) }' ||
  fail "none: train loss did not fall enough ($l0 -> $l1; want < 0.6x)"
echo "ok: none: train loss $l0 -> $l1"
awk -v a="$(field "$TMP/q8.out" 0 train_loss)" -v b="$l1_q8" 'BEGIN { exit !(b < 0.6 * a) }' ||
  fail "q8: train loss did not fall enough"
echo "ok: q8: train loss -> $l1_q8"
awk -v a="$acc_none" 'BEGIN { exit !(a >= 0.70) }' || fail "none: test accuracy $acc_none < 0.70"
echo "ok: none: test accuracy $acc_none >= 0.70"
awk -v a="$acc_none" -v b="$acc_q8" -v t="$Q8_BOUND" \
  'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= t) }' ||
  fail "q8 accuracy $acc_q8 is more than $Q8_BOUND from none's $acc_none"
echo "ok: q8 accuracy $acc_q8 within $Q8_BOUND of none's $acc_none"
for run in topk-dgc powersgd; do
  acc=$(field "$TMP/$run.out" 1 test_acc)
  [[ -n "$acc" ]] || fail "$run: no epoch line"
  grep -q 'weights_identical=yes' "$TMP/$run.out" || fail "$run: ranks ended with different weights"
  awk -v a="$acc_none" -v b="$acc" -v t="$LOSSY_BOUND" 'BEGIN { exit !(a - b <= t) }' ||
    fail "$run accuracy $acc is more than $LOSSY_BOUND below none's $acc_none"
  echo "ok: $run accuracy $acc within $LOSSY_BOUND of none's $acc_none"
done
step "OK"
