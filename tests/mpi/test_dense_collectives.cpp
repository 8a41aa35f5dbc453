// Dense collectives against an independent reference: exact for integers, and for floats
// within a bound derived from the number of terms (P-1 roundings of partial sums, plus the
// pre-division of 16-bit averages).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>

#include <gradwire/communicator.hpp>

#include "inputs.hpp"

using gradwire::Communicator;
using gradwire::DType;
using gradwire::ReduceOp;
using gwtest::Buffer;

namespace {

const DType kTypes[] = {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16,
                        DType::Int32,   DType::Int64,   DType::UInt8};
const ReduceOp kOps[] = {ReduceOp::Sum, ReduceOp::Avg, ReduceOp::Min, ReduceOp::Max,
                         ReduceOp::Prod};
const std::size_t kCounts[] = {0, 1, 2, 7, 13, 1031};

bool supported(DType t, ReduceOp op) {
  return !(op == ReduceOp::Prod && (t == DType::Float16 || t == DType::BFloat16));
}

struct Expect {
  double value;
  double tolerance;
};

// The reduction of every rank's element i, computed here from the generator.
Expect reference(DType t, ReduceOp op, std::uint64_t seed, int nranks, std::size_t i) {
  double acc = op == ReduceOp::Prod ? 1 : 0, mag = 0;
  double lo = INFINITY, hi = -INFINITY;
  std::int64_t isum = 0, iprod = 1;
  for (int r = 0; r < nranks; ++r) {
    const double x = gwtest::value(t, op, seed, r, i);
    acc = op == ReduceOp::Prod ? acc * x : acc + x;
    mag += std::fabs(x);
    lo = std::min(lo, x);
    hi = std::max(hi, x);
    isum += static_cast<std::int64_t>(x);
    if (op == ReduceOp::Prod) iprod *= static_cast<std::int64_t>(x);
  }
  const bool integer = !gradwire::is_float(t);
  if (op == ReduceOp::Min) return {lo, 0};
  if (op == ReduceOp::Max) return {hi, 0};
  if (integer) {
    std::int64_t v = op == ReduceOp::Sum ? isum : op == ReduceOp::Avg ? isum / nranks : iprod;
    if (t == DType::UInt8) v = static_cast<std::uint8_t>(v);  // MPI's uint8 arithmetic wraps
    return {static_cast<double>(v), 0};
  }
  const double u = gwtest::unit_roundoff(t);
  if (op == ReduceOp::Prod) return {acc, (nranks + 1) * u * std::fabs(acc)};
  if (op == ReduceOp::Avg) return {acc / nranks, (nranks + 2) * u * mag / nranks};
  return {acc, (nranks + 1) * u * mag};
}

// Counts mismatches instead of stopping at the first: a rank that left a test early would
// leave its peers waiting in the next collective.
struct Mismatch {
  std::size_t count = 0;
  std::string first;
  void check(std::size_t i, double got, const Expect& e) {
    if (std::fabs(got - e.value) <= e.tolerance) return;
    if (count++ == 0) {
      first = "element " + std::to_string(i) + ": got " + std::to_string(got) + ", expected " +
              std::to_string(e.value) + " +- " + std::to_string(e.tolerance);
    }
  }
};

std::string label(const char* what, DType t, ReduceOp op, std::size_t count, bool in_place,
                  bool blocking, bool unaligned) {
  return std::string(what) + " dtype=" + std::string(gradwire::dtype_name(t)) +
         " op=" + std::string(gradwire::op_name(op)) + " count=" + std::to_string(count) +
         (in_place ? " in-place" : " out-of-place") + (blocking ? " blocking" : " non-blocking") +
         (unaligned ? " unaligned" : "");
}

class Dense : public testing::Test {
 protected:
  Communicator comm{MPI_COMM_WORLD};
  int rank = comm.rank();
  int size = comm.size();
};

TEST_F(Dense, AllreduceEveryDtypeOpAndForm) {
  std::uint64_t seed = 1;
  for (DType t : kTypes) {
    for (ReduceOp op : kOps) {
      if (!supported(t, op)) continue;
      for (std::size_t count : kCounts) {
        for (int form = 0; form < 8; ++form) {
          const bool in_place = form & 1, blocking = form & 2, unaligned = form & 4;
          SCOPED_TRACE(label("allreduce", t, op, count, in_place, blocking, unaligned));
          ++seed;
          const std::size_t esz = gradwire::dtype_size(t);
          Buffer send(count * esz, unaligned), recv(count * esz, unaligned);
          for (std::size_t i = 0; i < count; ++i)
            gwtest::put(send.data(), t, i, gwtest::value(t, op, seed, rank, i));
          void* out = in_place ? send.data() : recv.data();
          if (blocking) {
            comm.allreduce(send.data(), out, count, t, op);
          } else {
            auto req = comm.iallreduce(send.data(), out, count, t, op);
            req.wait();
            EXPECT_TRUE(req.test());
          }
          Mismatch m;
          for (std::size_t i = 0; i < count; ++i)
            m.check(i, gwtest::get(out, t, i), reference(t, op, seed, size, i));
          EXPECT_EQ(m.count, 0u) << m.first;
        }
      }
    }
  }
}

TEST_F(Dense, AllreduceLargeBufferFloat32) {
  // Large enough for MPI's bandwidth algorithms (not just its small-message path).
  const std::size_t count = 262147;  // prime
  std::vector<float> x(count), y(count);
  for (std::size_t i = 0; i < count; ++i)
    x[i] = static_cast<float>(gwtest::value(DType::Float32, ReduceOp::Sum, 99, rank, i));
  comm.allreduce(x.data(), y.data(), count, DType::Float32, ReduceOp::Sum);
  Mismatch m;
  for (std::size_t i = 0; i < count; ++i)
    m.check(i, y[i], reference(DType::Float32, ReduceOp::Sum, 99, size, i));
  EXPECT_EQ(m.count, 0u) << m.first;
}

TEST_F(Dense, IntegerAverageTruncatesTowardZero) {
  // Sums chosen so that the quotient is negative and inexact: -7 / P rounds toward zero.
  std::int32_t v = rank == 0 ? -7 : 0;
  comm.allreduce(&v, &v, 1, DType::Int32, ReduceOp::Avg);
  EXPECT_EQ(v, -7 / size);
  std::uint8_t big = 250;  // the int64 accumulator keeps 250 * P from wrapping
  comm.allreduce(&big, &big, 1, DType::UInt8, ReduceOp::Avg);
  EXPECT_EQ(big, 250);
}

TEST_F(Dense, AllgatherFormsAndTypes) {
  std::uint64_t seed = 500;
  for (DType t : kTypes) {
    for (std::size_t count : kCounts) {
      for (int form = 0; form < 8; ++form) {
        const bool in_place = form & 1, blocking = form & 2, unaligned = form & 4;
        SCOPED_TRACE(label("allgather", t, ReduceOp::Sum, count, in_place, blocking, unaligned));
        ++seed;
        const std::size_t esz = gradwire::dtype_size(t);
        Buffer send(count * esz, unaligned), recv(count * esz * size, unaligned);
        void* mine = in_place ? static_cast<unsigned char*>(recv.data()) + rank * count * esz
                              : send.data();
        for (std::size_t i = 0; i < count; ++i)
          gwtest::put(mine, t, i, gwtest::value(t, ReduceOp::Sum, seed, rank, i));
        if (blocking) {
          comm.allgather(mine, recv.data(), count, t);
        } else {
          comm.iallgather(mine, recv.data(), count, t).wait();
        }
        Mismatch m;
        for (int r = 0; r < size; ++r)
          for (std::size_t i = 0; i < count; ++i)
            m.check(r * count + i, gwtest::get(recv.data(), t, r * count + i),
                    {gwtest::value(t, ReduceOp::Sum, seed, r, i), 0});
        EXPECT_EQ(m.count, 0u) << m.first;
      }
    }
  }
}

TEST_F(Dense, ReduceScatterFormsTypesAndOps) {
  std::uint64_t seed = 900;
  for (DType t : kTypes) {
    for (ReduceOp op : kOps) {
      if (!supported(t, op)) continue;
      for (std::size_t count : {std::size_t{0}, std::size_t{1}, std::size_t{13}}) {
        for (int form = 0; form < 8; ++form) {
          const bool in_place = form & 1, blocking = form & 2, unaligned = form & 4;
          SCOPED_TRACE(label("reduce_scatter", t, op, count, in_place, blocking, unaligned));
          ++seed;
          const std::size_t esz = gradwire::dtype_size(t), total = count * size;
          Buffer send(total * esz, unaligned), recv(count * esz, unaligned);
          for (std::size_t i = 0; i < total; ++i)
            gwtest::put(send.data(), t, i, gwtest::value(t, op, seed, rank, i));
          void* out = in_place ? static_cast<unsigned char*>(send.data()) + rank * count * esz
                               : recv.data();
          if (blocking) {
            comm.reduce_scatter(send.data(), out, count, t, op);
          } else {
            comm.ireduce_scatter(send.data(), out, count, t, op).wait();
          }
          Mismatch m;
          for (std::size_t i = 0; i < count; ++i)
            m.check(i, gwtest::get(out, t, i), reference(t, op, seed, size, rank * count + i));
          EXPECT_EQ(m.count, 0u) << m.first;
        }
      }
    }
  }
}

TEST_F(Dense, BroadcastFromEveryRoot) {
  std::uint64_t seed = 1300;
  for (DType t : kTypes) {
    for (int root = 0; root < size; ++root) {
      for (std::size_t count : {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{1031}}) {
        for (int form = 0; form < 4; ++form) {
          const bool blocking = form & 1, unaligned = form & 2;
          SCOPED_TRACE(label("broadcast", t, ReduceOp::Sum, count, false, blocking, unaligned) +
                       " root=" + std::to_string(root));
          ++seed;
          Buffer buf(count * gradwire::dtype_size(t), unaligned);
          for (std::size_t i = 0; i < count; ++i)
            gwtest::put(buf.data(), t, i, gwtest::value(t, ReduceOp::Sum, seed, rank, i));
          if (blocking) {
            comm.broadcast(buf.data(), count, t, root);
          } else {
            comm.ibroadcast(buf.data(), count, t, root).wait();
          }
          Mismatch m;
          for (std::size_t i = 0; i < count; ++i)
            m.check(i, gwtest::get(buf.data(), t, i), {gwtest::value(t, ReduceOp::Sum, seed, root, i), 0});
          EXPECT_EQ(m.count, 0u) << m.first;
        }
      }
    }
  }
}

TEST_F(Dense, TwoRequestsInFlight) {
  std::vector<double> a(100), b(100);
  for (int i = 0; i < 100; ++i) a[i] = rank + i, b[i] = 2.0 * rank;
  auto ra = comm.iallreduce(a.data(), a.data(), a.size(), DType::Float64, ReduceOp::Sum);
  auto rb = comm.iallreduce(b.data(), b.data(), b.size(), DType::Float64, ReduceOp::Max);
  rb.wait();
  ra.wait();
  const double ranks_sum = size * (size - 1) / 2.0;
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(a[i], ranks_sum + static_cast<double>(size) * i);
    EXPECT_EQ(b[i], 2.0 * (size - 1));
  }
}

}  // namespace
