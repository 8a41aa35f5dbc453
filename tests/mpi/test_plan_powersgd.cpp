// PowerSGD plans (docs/compressed-collectives.md, "powersgd"): exact recovery of a gradient
// of rank <= r, error feedback keeping what the factors left out, identical bits on every
// rank, the bytes of the two allreduces, and the errors for bad shapes.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <gradwire/communicator.hpp>
#include <gradwire/error.hpp>
#include <gradwire/plan.hpp>

#include "plan_inputs.hpp"

using gradwire::Communicator;
using gradwire::MatrixShape;
using gradwire::Plan;
using gradwire::PlanConfig;
using gradwire::ReduceOp;
using gwplan::identical_everywhere;
using gwplan::rank2_gradient;
using gwplan::signed_unit;

namespace {

const std::vector<MatrixShape>& kShapes = gwplan::kPowerSgdShapes;
constexpr std::size_t kCount = gwplan::kPowerSgdCount;

PlanConfig psgd_config(std::uint32_t rank, bool ef) {
  PlanConfig cfg;
  cfg.count = kCount;
  cfg.algorithm = "powersgd";
  cfg.op = ReduceOp::Avg;
  cfg.powersgd_rank = rank;
  cfg.shapes = kShapes;
  cfg.error_feedback = ef;
  cfg.seed = 11;
  return cfg;
}

TEST(PlanPowerSgd, RecoversALowRankGradientExactly) {
  Communicator comm(MPI_COMM_WORLD);
  const int P = comm.size(), me = comm.rank();
  std::vector<float> g, out(kCount);
  const std::vector<double> want = rank2_gradient(me, P, g);
  Plan plan(comm, psgd_config(2, true));
  EXPECT_EQ(plan.stats().algorithm, "powersgd");
  plan.run(g.data(), out.data());
  double worst = 0, scale = 0;
  for (std::size_t i = 0; i < kCount; ++i) {
    worst = std::max(worst, std::fabs(out[i] - want[i]));
    scale = std::max(scale, std::fabs(want[i]));
  }
  // Float rounding of three small products, not an approximation error.
  EXPECT_LE(worst, 1e-5 * scale) << "worst " << worst << " of " << scale;
  EXPECT_TRUE(identical_everywhere(out.data(), out.size() * 4));
  // A rank-1 plan cannot: the same gradient loses a whole direction.
  Plan r1(comm, psgd_config(1, true));
  r1.run(g.data(), out.data());
  worst = 0;
  for (std::size_t i = 0; i < 1200; ++i) worst = std::max(worst, std::fabs(out[i] - want[i]));
  EXPECT_GT(worst, 1e-2 * scale);
}

// Error feedback: sum over ranks of (this step's share of the result + the residual) is
// the sum of the inputs, so the residual file (the sum of every rank's residual) and the
// result add up to the inputs. Full-rank random gradients, rank 1, three steps.
TEST(PlanPowerSgd, ErrorFeedbackKeepsWhatTheFactorsLeftOut) {
  Communicator comm(MPI_COMM_WORLD);
  const int P = comm.size(), me = comm.rank();
  Plan plan(comm, psgd_config(1, true));
  std::vector<float> g(kCount), out(kCount);
  std::vector<double> fed(kCount, 0.0), given(kCount, 0.0);  // sums over ranks and steps
  for (int step = 0; step < 3; ++step) {
    for (int q = 0; q < P; ++q)
      for (std::size_t i = 0; i < kCount; ++i) {
        const float x = static_cast<float>(signed_unit(10 + step, q, i));
        if (q == me) g[i] = x;
        fed[i] += x;
      }
    plan.run(g.data(), out.data());
    for (std::size_t i = 0; i < kCount; ++i) given[i] += static_cast<double>(out[i]) * P;
    EXPECT_TRUE(identical_everywhere(out.data(), out.size() * 4)) << "step " << step;
  }
  char path[] = "/tmp/gw_psgd_resid_XXXXXX";
  int fd = -1;
  if (me == 0) fd = mkstemp(path);
  MPI_Bcast(path, sizeof path, MPI_CHAR, 0, MPI_COMM_WORLD);
  plan.save_residual(path);
  if (me == 0) {
    // Residual file v1: 24 header bytes, then one float64 per element (plan.cpp).
    std::ifstream f(path, std::ios::binary);
    std::vector<double> resid(kCount);
    f.seekg(24);
    f.read(reinterpret_cast<char*>(resid.data()), static_cast<std::streamsize>(kCount * 8));
    ASSERT_TRUE(f.good());
    double worst = 0, left = 0;
    for (std::size_t i = 0; i < kCount; ++i) {
      worst = std::max(worst, std::fabs(given[i] + resid[i] - fed[i]));
      if (i < 1200) left = std::max(left, std::fabs(resid[i]));
      if (i >= 1200) {
        EXPECT_EQ(resid[i], 0.0) << "dense element " << i << " has a residual";
      }
    }
    EXPECT_LE(worst, 1e-4 * P) << "result + residual differ from the inputs";
    EXPECT_GT(left, 0.1) << "rank 1 of a random 40x30 matrix leaves a residual";
    close(fd);
    std::remove(path);
  }
}

TEST(PlanPowerSgd, WireBytesAreTheTwoAllreduces) {
  Communicator comm(MPI_COMM_WORLD);
  const int P = comm.size();
  Plan plan(comm, psgd_config(3, true));
  std::vector<float> g(kCount, 1.0f), out(kCount);
  plan.run(g.data(), out.data());
  // P: 40x3 plus the 37 dense elements; Q: 30x3; each allreduce 2 (P-1)/P of its bytes.
  const std::size_t pb = (40 * 3 + 37) * 4, qb = 30 * 3 * 4;
  const std::size_t want = P > 1 ? 2 * (P - 1) * pb / P + 2 * (P - 1) * qb / P : 0;
  EXPECT_EQ(plan.stats().wire_bytes, want);
  EXPECT_EQ(plan.stats().logical_bytes, kCount * 4);
}

TEST(PlanPowerSgd, BadShapesAreRejectedByName) {
  Communicator comm(MPI_COMM_WORLD);
  auto expect_error = [&](PlanConfig cfg, const std::string& word) {
    try {
      Plan plan(comm, cfg);
      ADD_FAILURE() << "no error; wanted one naming " << word;
    } catch (const gradwire::Error& e) {
      EXPECT_EQ(e.code(), gradwire::ErrorCode::InvalidArgument) << e.what();
      EXPECT_NE(std::string(e.what()).find(word), std::string::npos) << e.what();
    }
  };
  PlanConfig cfg = psgd_config(2, true);
  cfg.shapes.push_back({100, 100});
  expect_error(cfg, "count");
  cfg = psgd_config(0, true);
  expect_error(cfg, "powersgd_rank");
  cfg = psgd_config(2, true);
  cfg.codec = "q8";
  expect_error(cfg, "codec none");
  cfg = psgd_config(2, true);
  cfg.shapes[0].rows = 0;
  expect_error(cfg, "rows");
}

}  // namespace
