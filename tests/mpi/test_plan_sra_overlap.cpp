// SRA's pipelined scatter (GRADWIRE_OVERLAP=1: each chunk sent as soon as it is encoded)
// against the plain order (every chunk encoded, then all sent; the default): the same
// messages, so the same wire bytes and, where the sum order cannot differ (two ranks), the
// same bits.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <gradwire/communicator.hpp>
#include <gradwire/plan.hpp>

#include "inputs.hpp"

namespace {

TEST(PlanSraOverlap, SameMessagesAsThePlainOrder) {
  gradwire::Communicator comm(MPI_COMM_WORLD);
  const int P = comm.size(), me = comm.rank();
  for (std::size_t n : {std::size_t{1}, std::size_t{1000}, std::size_t{70001}}) {
    gradwire::PlanConfig cfg;
    cfg.count = n;
    cfg.codec = "q4";
    cfg.algorithm = "sra";
    setenv("GRADWIRE_OVERLAP", "1", 1);
    gradwire::Plan piped(comm, cfg);
    unsetenv("GRADWIRE_OVERLAP");
    gradwire::Plan plain(comm, cfg);
    std::vector<float> x(n), a(n), b(n);
    for (int step = 0; step < 3; ++step) {  // error feedback carried: residuals must agree too
      for (std::size_t i = 0; i < n; ++i)
        x[i] = static_cast<float>(gwtest::value(gradwire::DType::Float32, gradwire::ReduceOp::Sum, 40 + step, me, i));
      piped.run(x.data(), a.data());
      plain.run(x.data(), b.data());
      EXPECT_EQ(piped.stats().wire_bytes, plain.stats().wire_bytes);
      if (P <= 2) {
        EXPECT_EQ(a, b) << "n=" << n << " step " << step;
      } else {
        double worst = 0;
        for (std::size_t i = 0; i < n; ++i) worst = std::max(worst, static_cast<double>(std::fabs(a[i] - b[i])));
        // Only the float32 order of the P partial sums may differ before the re-encode, which
        // can then round a value to a neighbouring code: at most a few q4 steps of |S| <= 4P.
        EXPECT_LE(worst, 8.0 * P / 15 * 2 + 1e-3) << "n=" << n;
      }
    }
  }
}

}  // namespace

namespace {

// Not a check: the before/after ratio of the pipelined scatter in one process (two plans run
// alternately, paired per round), for bench/results/sra-overlap.md. Run with
// --gtest_also_run_disabled_tests --gtest_filter='*DISABLED_SraOverlapMeasure*'.
TEST(DISABLED_SraOverlapMeasure, PipelinedAgainstPlain) {
  gradwire::Communicator comm(MPI_COMM_WORLD);
  for (const char* codec : {"q8", "q4"}) {
    for (std::size_t n : {std::size_t{1} << 18, std::size_t{1} << 22}) {
      gradwire::PlanConfig cfg;
      cfg.count = n;
      cfg.codec = codec;
      cfg.algorithm = "sra";
      setenv("GRADWIRE_OVERLAP", "1", 1);
      gradwire::Plan piped(comm, cfg);
      unsetenv("GRADWIRE_OVERLAP");
      gradwire::Plan plain(comm, cfg);
      std::vector<float> x(n), out(n);
      for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<float>((i * 7 + comm.rank()) % 101) / 25.0f - 2;
      auto timed = [&](gradwire::Plan& p) {
        MPI_Barrier(MPI_COMM_WORLD);
        const double t0 = MPI_Wtime();
        p.run(x.data(), out.data());
        double t = MPI_Wtime() - t0;
        MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        return t;
      };
      timed(piped);
      timed(plain);
      std::vector<double> tp, tb, ratio;
      for (int r = 0; r < 15; ++r) {  // alternate which goes first
        if (r % 2) {
          tp.push_back(timed(piped));
          tb.push_back(timed(plain));
        } else {
          tb.push_back(timed(plain));
          tp.push_back(timed(piped));
        }
        ratio.push_back(tb.back() / tp.back());
      }
      auto med = [](std::vector<double> v) {
        std::sort(v.begin(), v.end());
        return v[v.size() / 2];
      };
      if (comm.rank() == 0)
        std::printf("P=%d %s n=%zu: plain %.2f ms, pipelined %.2f ms (medians of 15), paired plain/pipelined %.3f\n",
                    comm.size(), codec, n, med(tb) * 1e3, med(tp) * 1e3, med(ratio));
    }
  }
}

}  // namespace
