// Not a test: error and time of shared-grid against SRA, run by hand
//   mpirun -np 4 tests/mpi/gw_mpi_tests --gtest_also_run_disabled_tests
//          --gtest_filter='*DISABLED_PlanMeasure*'
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <vector>

#include <gradwire/plan.hpp>

#include "inputs.hpp"

TEST(DISABLED_PlanMeasure, SharedGridAgainstSra) {
  gradwire::Communicator comm(MPI_COMM_WORLD);
  const int P = comm.size(), me = comm.rank();
  const std::size_t n = 1 << 20;
  std::vector<float> x(n), out(n);
  std::vector<double> exact(n, 0);
  for (int r = 0; r < P; ++r)
    for (std::size_t i = 0; i < n; ++i) {
      const float v = static_cast<float>(gwtest::value(gradwire::DType::Float32, gradwire::ReduceOp::Sum, 9, r, i));
      exact[i] += v;
      if (r == me) x[i] = v;
    }
  for (const char* codec : {"q8", "q4", "q2"}) {
    for (const char* algo : {"sra", "shared-grid"}) {
      gradwire::PlanConfig cfg;
      cfg.count = n;
      cfg.codec = codec;
      cfg.algorithm = algo;
      cfg.error_feedback = false;
      gradwire::Plan plan(comm, cfg);
      plan.run(x.data(), out.data());  // warm-up
      double best = 1e30, enc = 0, dec = 0;
      std::size_t wire = 0;
      for (int k = 0; k < 5; ++k) {
        MPI_Barrier(MPI_COMM_WORLD);
        plan.run(x.data(), out.data());
        double t = plan.stats().total_s;
        MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        if (t < best) {
          best = t;
          enc = plan.stats().encode_s;
          dec = plan.stats().decode_s;
          wire = plan.stats().wire_bytes;
        }
      }
      double se = 0, mx = 0;
      for (std::size_t i = 0; i < n; ++i) {
        const double e = out[i] - exact[i];
        se += e * e;
        mx = std::max(mx, std::fabs(e));
      }
      if (me == 0)
        std::printf("P=%d n=%zu %-4s %-11s rms_err=%.4g max_err=%.4g time=%.2f ms (encode %.2f, decode %.2f) wire=%zu B/rank\n",
                    P, n, codec, algo, std::sqrt(se / n), mx, best * 1e3, enc * 1e3, dec * 1e3, wire);
    }
  }
}
