// DGC options of top-k plans (docs/compressed-collectives.md, "DGC options"): the warm-up's
// k per step, momentum correction with and without momentum factor masking against the
// documented recurrences, local gradient clipping, and the errors for bad options.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <gradwire/codec.hpp>
#include <gradwire/communicator.hpp>
#include <gradwire/error.hpp>
#include <gradwire/plan.hpp>

using gradwire::Communicator;
using gradwire::Plan;
using gradwire::PlanConfig;
using gradwire::ReduceOp;

namespace {

PlanConfig topk_config(std::size_t n, const std::string& codec) {
  PlanConfig cfg;
  cfg.count = n;
  cfg.codec = codec;
  cfg.op = ReduceOp::Avg;
  cfg.algorithm = "sparse-allgather";
  return cfg;
}

// Every rank feeds the same gradient, so every rank picks the same elements and the average
// is this rank's own message, exactly: nnz(out) is the k of the step.
TEST(PlanDgc, WarmupDensityGivesTheScheduledKPerStep) {
  Communicator comm(MPI_COMM_WORLD);
  const std::size_t n = 1000;
  const std::uint64_t W = 5;
  PlanConfig cfg = topk_config(n, "topk:0.01");
  cfg.warmup_steps = W;
  cfg.warmup_density = 0.1;  // 8 ranks x 10 % stays below the plan's dense switch
  Plan plan(comm, cfg);
  std::vector<float> g(n), out(n);
  for (std::size_t i = 0; i < n; ++i) g[i] = 1.0f + static_cast<float>((i * 37) % n) * 1e-3f;
  for (std::uint64_t t = 0; t < W + 3; ++t) {
    plan.run(g.data(), out.data());
    // The schedule: 0.1 * (0.01 / 0.1)^(t / W) during the warm-up, then the codec's 1 %.
    gradwire::CodecSpec s = gradwire::parse_codec("topk:0.01");
    if (t < W) s.ratio = 0.1 * std::pow(0.1, static_cast<double>(t) / static_cast<double>(W));
    const std::size_t want = gradwire::Codec(s).topk_count(n);
    const auto nnz = static_cast<std::size_t>(
        std::count_if(out.begin(), out.end(), [](float v) { return v != 0.0f; }));
    EXPECT_EQ(nnz, want) << "step " << t;
  }
  // The warm-up really changes k: its first step sends ten times the final one's.
  EXPECT_GT(gradwire::Codec(gradwire::parse_codec("topk:0.1")).topk_count(n),
            5 * gradwire::Codec(gradwire::parse_codec("topk:0.01")).topk_count(n));
}

// DGC with top-1 of 128 elements (four non-zero: 128 keeps the plan off its dense switch at
// 8 ranks), the same gradient on every rank, against the recurrences
// of docs/compressed-collectives.md: u = m u + g; v = r + u; send the largest |v|; r = v
// with the sent element zeroed; masking also zeroes u there. All values are dyadic, so the
// float reference is exact.
std::vector<float> dgc_reference(const std::vector<float>& g, float m, bool masking, int steps,
                                 std::vector<std::size_t>* sent) {
  std::vector<float> u(g.size(), 0.0f), r(g.size(), 0.0f), outs;
  for (int t = 0; t < steps; ++t) {
    std::vector<float> v(g.size());
    for (std::size_t i = 0; i < g.size(); ++i) {
      u[i] = m * u[i] + g[i];
      v[i] = u[i] + r[i];
    }
    std::size_t best = 0;
    for (std::size_t i = 1; i < v.size(); ++i)
      if (std::fabs(v[i]) > std::fabs(v[best])) best = i;
    for (std::size_t i = 0; i < v.size(); ++i) outs.push_back(i == best ? v[i] : 0.0f);
    r = v;
    r[best] = 0.0f;
    if (masking) u[best] = 0.0f;
    sent->push_back(best);
  }
  return outs;
}

TEST(PlanDgc, MomentumCorrectionAndMaskingFollowTheRecurrences) {
  Communicator comm(MPI_COMM_WORLD);
  std::vector<float> g(128, 0.0f);
  g[0] = 4.0f, g[1] = 3.0f, g[2] = 2.0f, g[3] = 1.0f;
  const int steps = 8;
  std::vector<std::vector<float>> got(2);
  for (int masking = 0; masking < 2; ++masking) {
    PlanConfig cfg = topk_config(g.size(), "topk:k=1");
    cfg.momentum = 0.5f;
    cfg.momentum_masking = masking != 0;
    Plan plan(comm, cfg);
    std::vector<float> out(g.size());
    for (int t = 0; t < steps; ++t) {
      plan.run(g.data(), out.data());
      got[masking].insert(got[masking].end(), out.begin(), out.end());
    }
    std::vector<std::size_t> sent;
    const std::vector<float> want = dgc_reference(g, 0.5f, masking != 0, steps, &sent);
    for (std::size_t i = 0; i < want.size(); ++i)
      EXPECT_EQ(got[masking][i], want[i]) << "masking " << masking << ", step "
                                          << i / g.size() << ", element " << i % g.size();
  }
  // Masking is observable: the two runs part at step 2 (10 against 13 for element 0).
  EXPECT_NE(got[0], got[1]);

  // reset_residual also forgets the velocity: the next run is a first step again.
  PlanConfig cfg = topk_config(g.size(), "topk:k=1");
  cfg.momentum = 0.5f;
  Plan plan(comm, cfg);
  std::vector<float> out(g.size());
  plan.run(g.data(), out.data());
  plan.run(g.data(), out.data());
  plan.reset_residual();
  plan.run(g.data(), out.data());
  std::vector<float> first(g.size(), 0.0f);
  first[0] = 4.0f;
  EXPECT_EQ(out, first);
}

TEST(PlanDgc, ClippingBoundsTheNormBeforeAccumulation) {
  Communicator comm(MPI_COMM_WORLD);
  const std::size_t n = 64;
  PlanConfig cfg = topk_config(n, "topk:1.0");  // every element goes out: out = clipped g
  cfg.clip_norm = 1.0f;
  Plan plan(comm, cfg);
  std::vector<float> g(n), out(n);
  double norm = 0;
  for (std::size_t i = 0; i < n; ++i) {
    g[i] = static_cast<float>(static_cast<int>(i % 7) - 3) * 2.0f;
    norm += static_cast<double>(g[i]) * g[i];
  }
  norm = std::sqrt(norm);
  ASSERT_GT(norm, 10.0);
  plan.run(g.data(), out.data());
  double got = 0;
  for (std::size_t i = 0; i < n; ++i) {
    got += static_cast<double>(out[i]) * out[i];
    EXPECT_NEAR(out[i], g[i] / norm, 1e-6) << i;  // the direction is kept
  }
  EXPECT_LE(std::sqrt(got), 1.0 + 1e-5);
  EXPECT_GT(std::sqrt(got), 1.0 - 1e-5);
  // A gradient inside the bound passes unchanged (the residual is empty: topk:1.0 sent all).
  std::vector<float> small(n, 0.0625f);  // dyadic: the sum over ranks and /P are exact
  plan.run(small.data(), out.data());
  for (std::size_t i = 0; i < n; ++i) EXPECT_EQ(out[i], 0.0625f) << i;
}

TEST(PlanDgc, BadOptionsAreRejectedByName) {
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
  PlanConfig cfg = topk_config(100, "topk:0.1");
  cfg.momentum = 1.5f;
  expect_error(cfg, "momentum");
  cfg = topk_config(100, "topk:0.1");
  cfg.clip_norm = -1.0f;
  expect_error(cfg, "clip_norm");
  cfg = topk_config(100, "q8");
  cfg.algorithm = "sra";
  cfg.warmup_steps = 10;
  expect_error(cfg, "warmup_steps");
  cfg = topk_config(100, "topk:0.1");
  cfg.warmup_steps = 10;
  cfg.warmup_density = 0.0;
  expect_error(cfg, "warmup_density");
}

}  // namespace
