// Compressed allgather plans: each block encoded once and decoded by all, so every rank holds
// the same bits, each block within its codec's bound of the input (docs/codecs.md).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <string>
#include <vector>

#include <gradwire/codec.hpp>
#include <gradwire/communicator.hpp>
#include <gradwire/plan.hpp>

#include "inputs.hpp"

using gradwire::DType;
using gradwire::ReduceOp;

namespace {

TEST(PlanAllgather, EveryBlockWithinItsCodecBound) {
  gradwire::Communicator comm(MPI_COMM_WORLD);
  const int P = comm.size(), me = comm.rank();
  for (const char* codec : {"none", "q4", "q8:round=nearest", "fp16", "topk:0.2", "sign:bucket=64"}) {
    for (DType t : {DType::Float32, DType::Float16}) {
      for (std::size_t n : {0, 1, 13, 1031}) {
        gradwire::PlanConfig cfg;
        cfg.collective = gradwire::PlanCollective::Allgather;
        cfg.count = n;
        cfg.dtype = t;
        cfg.codec = codec;
        cfg.error_feedback = false;
        gradwire::Plan plan(comm, cfg);
        const std::size_t esz = gradwire::dtype_size(t);
        std::vector<unsigned char> x(n * esz + 1), out(n * esz * P + 1);
        for (std::size_t i = 0; i < n; ++i) gwtest::put(x.data(), t, i, gwtest::value(t, ReduceOp::Sum, 11, me, i));
        // In place for float16: the own block already sits in the output.
        if (t == DType::Float16) {
          std::copy_n(x.data(), n * esz, out.data() + me * n * esz);
          plan.run(out.data() + me * n * esz, out.data());
        } else {
          plan.run(x.data(), out.data());
        }
        const gradwire::Codec c = gradwire::make_codec(codec);
        std::size_t bad = 0;
        std::string first;
        for (int r = 0; r < P; ++r) {
          std::vector<float> xr(n);
          for (std::size_t i = 0; i < n; ++i) xr[i] = static_cast<float>(gwtest::value(t, ReduceOp::Sum, 11, r, i));
          const std::vector<float> e = c.error_bounds(xr.data(), n);
          for (std::size_t i = 0; i < n; ++i) {
            const double got = gwtest::get(out.data(), t, r * n + i);
            // A float16 output rounds the decoded value once more.
            const double b = e[i] + (t == DType::Float16 ? 0x1.0p-11 * (std::fabs(xr[i]) + e[i]) : 0.0);
            if (std::fabs(got - xr[i]) > b && bad++ == 0)
              first = "rank " + std::to_string(r) + " element " + std::to_string(i);
          }
        }
        EXPECT_EQ(bad, 0u) << codec << " " << gradwire::dtype_name(t) << " n=" << n << ": " << first;
        std::uint64_t h = 0xcbf29ce484222325ull;
        for (std::size_t i = 0; i < n * esz * P; ++i) h = (h ^ out[i]) * 0x100000001b3ull;
        std::uint64_t mm[2] = {h, ~h};
        MPI_Allreduce(MPI_IN_PLACE, mm, 2, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
        EXPECT_EQ(mm[0], ~mm[1]) << codec << ": ranks differ";
        EXPECT_EQ(plan.stats().algorithm, std::string(codec) == "none" ? "dense" : "compressed-allgather");
      }
    }
  }
}

// Allgather residuals are per block: saved and loaded at the same size they come back as-is.
TEST(PlanAllgather, ResidualRoundTrip) {
  gradwire::Communicator comm(MPI_COMM_WORLD);
  long long pid = static_cast<long long>(getpid());
  MPI_Bcast(&pid, 1, MPI_LONG_LONG, 0, MPI_COMM_WORLD);
  const std::string path = "/tmp/gradwire_ag_resid_" + std::to_string(pid);
  gradwire::PlanConfig cfg;
  cfg.collective = gradwire::PlanCollective::Allgather;
  cfg.count = 300;
  cfg.codec = "q2";
  gradwire::Plan a(comm, cfg), b(comm, cfg);
  std::vector<float> x(300), out(300 * comm.size()), out2(out.size());
  for (std::size_t i = 0; i < 300; ++i) x[i] = static_cast<float>(gwtest::value(DType::Float32, ReduceOp::Sum, 4, comm.rank(), i));
  a.run(x.data(), out.data());
  a.save_residual(path);
  b.load_residual(path);
  // Same residual, same step key: the second run of each gives the same bits.
  for (int k = 0; k < 1; ++k) {
    b.run(x.data(), out2.data());  // b at step 0 with a's residual; compare with a fresh twin
  }
  gradwire::Plan c(comm, cfg);
  c.load_residual(path);
  std::vector<float> out3(out.size());
  c.run(x.data(), out3.data());
  EXPECT_EQ(out2, out3);
  MPI_Barrier(MPI_COMM_WORLD);
  if (comm.rank() == 0) std::remove(path.c_str());
}

}  // namespace
