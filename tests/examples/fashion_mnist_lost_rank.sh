#!/usr/bin/env bash
# examples/fashion_mnist with a rank killed mid-epoch (ULFM builds): installs BUILD_DIR's
# gradwire, builds the example against it (and the same MPI), trains at 4 ranks on the first
# 6000 training examples (46 steps an epoch) with --codec q8 while world rank 2 is killed
# (SIGKILL), and checks, per POLICY:
#   shrink:  killed at step 20 of 1 epoch; the survivors shrink to 3 ranks and finish;
#   respawn: killed at step 60 (epoch 2 of 2); a replacement joins as rank 2 and the job
#            finishes on 4 ranks;
# in both, the lost rank is named, the ranks end with identical weights, and test accuracy
# reaches 0.70 (the floor the uninterrupted 2-rank run of fashion_mnist_short.sh reaches).
#
#   tests/examples/fashion_mnist_lost_rank.sh BUILD_DIR MPIRUN MPI_HOME shrink|respawn
set -euo pipefail
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="$(cd "$1" && pwd)"
MPIRUN_BIN=$2
MPI_PREFIX=$3
POLICY=$4
case "$POLICY" in
  shrink) KILL_STEP=20 EPOCHS=1 FINAL_RANKS=3 REPORT="shrunk from 4 to 3 ranks at step 20" ;;
  respawn) KILL_STEP=60 EPOCHS=2 FINAL_RANKS=4 REPORT="respawned: 4 ranks at step 6[01] (was 4)" ;;
  *) echo "fashion_mnist_lost_rank: POLICY must be shrink or respawn, not '$POLICY'" >&2; exit 2 ;;
esac
JOBS="${GRADWIRE_JOBS:-2}"
DATA="${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OPENBLAS_NUM_THREADS=1 GRADWIRE_TIMEOUT=30
# docs/fault-tolerance.md: Open MPI 5.0's finalize fence, and han's merge deadlock (ompi#11724).
export OMPI_MCA_async_mpi_finalize=1 OMPI_MCA_coll=^han
TMP="$(mktemp -d "${TMPDIR:-/tmp}/gradwire-fm-$POLICY.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
fail() { echo "fashion_mnist_lost_rank ($POLICY): FAIL: $*" >&2; exit 1; }
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
[[ -f "$DATA/train-images-idx3-ubyte.gz" ]] || fail "no Fashion-MNIST in $DATA (scripts/setup.sh)"

cmake --build "$BUILD" -j "$JOBS" --target gradwire_codec gradwire >/dev/null
cmake --install "$BUILD" --prefix "$TMP/prefix" >"$TMP/install.log" || { cat "$TMP/install.log"; fail "install"; }
cmake --no-warn-unused-cli -S "$SRC/examples/fashion_mnist" -B "$TMP/ex" "${GEN[@]}" \
  -DCMAKE_PREFIX_PATH="$TMP/prefix" -DMPI_HOME="$MPI_PREFIX" -DCMAKE_BUILD_TYPE=Release \
  >"$TMP/configure.log" || { cat "$TMP/configure.log"; fail "configure"; }
cmake --build "$TMP/ex" -j "$JOBS" >"$TMP/build.log" || { cat "$TMP/build.log"; fail "build"; }

rc=0
FM_KILL_RANK=2 FM_KILL_STEP=$KILL_STEP timeout -k 5 240 "$MPIRUN_BIN" --with-ft ulfm --oversubscribe -np 4 \
  -x FM_KILL_RANK -x FM_KILL_STEP -x OPENBLAS_NUM_THREADS -x GRADWIRE_TIMEOUT \
  "$TMP/ex/fashion_mnist" --codec q8 --on-failure "$POLICY" --epochs "$EPOCHS" --train-subset 6000 \
  --batch 32 --lr 0.05 --seed 7 >"$TMP/out" 2>&1 || rc=$?
cat "$TMP/out"
[[ $rc -ne 124 && $rc -ne 137 ]] || fail "the job hung"
grep -q "$REPORT" "$TMP/out" || fail "no '$REPORT' reported"
grep -q "peer failed: 1 rank(s) lost: ranks 2 " "$TMP/out" || fail "the lost rank was not named"
grep -q "RESULT .*ranks=$FINAL_RANKS .*weights_identical=yes" "$TMP/out" ||
  fail "the $FINAL_RANKS ranks did not finish alike"
acc=$(sed -n 's/^RESULT .*test_acc=\([0-9.]*\).*/\1/p' "$TMP/out")
awk -v a="$acc" 'BEGIN { exit !(a >= 0.70) }' || fail "test accuracy $acc < 0.70"
echo "fashion_mnist_lost_rank ($POLICY): OK (test accuracy $acc on $FINAL_RANKS ranks)"
