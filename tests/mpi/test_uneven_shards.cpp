// Uneven ranks (collectives/shards.hpp, docs/compressed-collectives.md "Uneven ranks"): the
// shard layout from weights (even by default, bucket-aligned, bad weights rejected), the
// weights from measured speeds, the model of both layouts, and balanced SRA plans: the same
// weights on every rank, a slowed rank owning less, and results identical (exact inputs) or
// within the documented SRA bound (q8) at any rank count.
#include <gtest/gtest.h>

#include <cmath>
#include <utility>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include <gradwire/codec.hpp>
#include <gradwire/communicator.hpp>
#include <gradwire/error.hpp>
#include <gradwire/gradwire.h>
#include <gradwire/plan.hpp>

#include "collectives/shards.hpp"
#include "collectives/staged.hpp"
#include "caught.hpp"
#include "inputs.hpp"
#include "plan_bounds.hpp"

using gradwire::coll::RankCosts;
using gradwire::coll::shard_offsets;

namespace {

void expect_layout(const std::vector<std::size_t>& off, std::size_t n, std::size_t unit, int P) {
  ASSERT_EQ(off.size(), static_cast<std::size_t>(P) + 1);
  EXPECT_EQ(off[0], 0u);
  EXPECT_EQ(off[static_cast<std::size_t>(P)], n);
  for (int r = 0; r < P; ++r) {
    EXPECT_LE(off[r], off[r + 1]);
    if (off[r] < n) {
      EXPECT_EQ(off[r] % unit, 0u) << "boundary " << r << " not bucket-aligned";
    }
  }
}

TEST(UnevenShards, EvenByDefault) {
  for (int P : {1, 2, 3, 4, 5, 8})
    for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{511}, std::size_t{513},
                          std::size_t{100000}})
      for (std::size_t unit : {std::size_t{1}, std::size_t{512}}) {
        const auto off = shard_offsets(n, unit, P);
        EXPECT_EQ(off, gradwire::coll::chunk_offsets(n, unit, P));
        expect_layout(off, n, unit, P);
        // Equal weights of any magnitude cut within one unit of the even split.
        const auto eq = shard_offsets(n, unit, P, std::vector<double>(P, 3.0));
        expect_layout(eq, n, unit, P);
        for (int r = 0; r <= P; ++r)
          EXPECT_LE(std::max(eq[r], off[r]) - std::min(eq[r], off[r]), unit);
      }
}

TEST(UnevenShards, ProportionalToWeights) {
  const std::size_t unit = 512, units = 5600, n = unit * units - 100;  // a short last bucket
  const auto off = shard_offsets(n, unit, 4, {16, 16, 16, 8});
  expect_layout(off, n, unit, 4);
  // Shares 16/56, 16/56, 16/56, 8/56 of the units, boundaries at whole buckets.
  EXPECT_EQ(off[1], unit * 1600);
  EXPECT_EQ(off[2], unit * 3200);
  EXPECT_EQ(off[3], unit * 4800);
  EXPECT_LT(off[4] - off[3], off[1] - off[0]);
  // Few buckets: a light rank may own nothing, the layout still covers everything.
  const auto tiny = shard_offsets(3 * unit, unit, 4, {16, 1, 16, 16});
  expect_layout(tiny, 3 * unit, unit, 4);
  EXPECT_EQ(tiny[2] - tiny[1], 0u);
}

TEST(UnevenShards, BadWeightsRejected) {
  auto msg = [](const std::vector<double>& w, int P) -> std::string {
    try {
      shard_offsets(1000, 1, P, w);
    } catch (const gradwire::Error& e) {
      EXPECT_EQ(e.code(), gradwire::ErrorCode::InvalidArgument);
      return e.what();
    }
    return "";
  };
  EXPECT_NE(msg({1, 2, 3}, 4).find("3 given for 4 ranks"), std::string::npos);
  EXPECT_NE(msg({1, 0, 1, 1}, 4).find("rank 1"), std::string::npos);
  EXPECT_NE(msg({1, 1, -2, 1}, 4).find("rank 2"), std::string::npos);
  EXPECT_NE(msg({1, 1, 1, std::nan("")}, 4).find("rank 3"), std::string::npos);
  EXPECT_NE(msg({std::numeric_limits<double>::infinity(), 1}, 2).find("rank 0"),
            std::string::npos);
}

TEST(UnevenShards, WeightsFromSpeeds) {
  RankCosts rc;
  rc.enc = {2e-9, 2e-9, 2e-9, 2e-9};
  rc.dec = {1e-9, 1e-9, 1e-9, 1e-9};
  EXPECT_TRUE(gradwire::coll::shard_weights(rc).empty());  // equal: the even split
  rc.enc[3] *= 1.1;
  rc.dec[3] *= 1.1;
  EXPECT_TRUE(gradwire::coll::shard_weights(rc).empty());  // within the noise
  rc.enc[3] = 4e-9;
  rc.dec[3] = 2e-9;  // half speed
  EXPECT_EQ(gradwire::coll::shard_weights(rc), (std::vector<double>{16, 16, 16, 8}));
}

TEST(UnevenShards, ModelOfBothLayouts) {
  const auto q8 = gradwire::make_codec("q8");
  gradwire::coll::CostInputs in;
  in.alpha = 2e-5;
  in.beta = 1e-10;
  RankCosts rc;
  rc.enc = {2e-9, 2e-9, 2e-9, 4e-9};
  rc.dec = {1e-9, 1e-9, 1e-9, 2e-9};
  const std::size_t n = std::size_t{1} << 24;
  const auto even = shard_offsets(n, 512, 4);
  const auto bal = shard_offsets(n, 512, 4, gradwire::coll::shard_weights(rc));
  const double te = gradwire::coll::predict_sra_shards(in, rc, q8, even);
  const double tb = gradwire::coll::predict_sra_shards(in, rc, q8, bal);
  EXPECT_LT(tb, te);
  // The slow rank's whole-buffer encode and decode do not shrink: only its reduction does.
  const double fixed = (4e-9 + 2e-9) * static_cast<double>(n);
  EXPECT_GT(tb, fixed);
  // Even: the slow rank reduces n/4 at 4 * 2 + 4 ns per element (3 ns per element of n).
  // Balanced (16, 16, 16, 8): every rank's reduction takes 16/56 n * 6 ns = 8/56 n * 12 ns.
  // On a shared link the exchanges cost the mean message: the same bytes in all either way.
  const double N = static_cast<double>(n);
  EXPECT_NEAR(te - tb, (3e-9 - 6e-9 * 16 / 56) * N, 0.001 * (te - tb));
  // Equal ranks: balancing changes nothing.
  RankCosts eq;
  eq.enc = {2e-9, 2e-9, 2e-9, 2e-9};
  eq.dec = {1e-9, 1e-9, 1e-9, 1e-9};
  EXPECT_DOUBLE_EQ(gradwire::coll::predict_sra_shards(in, eq, q8, even),
                   gradwire::coll::predict_sra_shards(in, eq, q8, shard_offsets(n, 512, 4, {1, 1, 1, 1})));
}

// A balanced plan with the last rank slowed on purpose (GRADWIRE_SLOW_RANK, 50x: far beyond
// what scheduling noise does to a probe on a loaded, oversubscribed host, where 8x was once
// not enough): every rank holds the same weights, the slow rank the smallest; fp16 on small integers sums exactly, so the
// result equals the even plan's and the exact sum bit for bit; q8 stays within SRA's bound.
TEST(UnevenShards, BalancedPlanAgreesAndStaysWithinBound) {
  gradwire::Communicator comm(MPI_COMM_WORLD);
  const int P = comm.size(), me = comm.rank();
  const std::string slow = std::to_string(P - 1) + ":50";
  // fp16 at a size where some ranks own nothing at 8 ranks, q8 at several buckets per rank.
  const std::pair<const char*, std::size_t> cases[] = {{"fp16", 700}, {"q8", 40000}};
  for (const auto& [codec, n] : cases) {
    {
      gradwire::PlanConfig cfg;
      cfg.count = n;
      cfg.codec = codec;
      cfg.algorithm = "sra";
      cfg.error_feedback = false;
      setenv("GRADWIRE_SLOW_RANK", slow.c_str(), 1);
      cfg.balance_shards = true;
      gradwire::Plan bal(comm, cfg);
      unsetenv("GRADWIRE_SLOW_RANK");
      cfg.balance_shards = false;
      gradwire::Plan even(comm, cfg);
      const std::vector<double>& w = bal.stats().shard_weights;
      EXPECT_TRUE(even.stats().shard_weights.empty());
      if (P > 1) {
        ASSERT_EQ(w.size(), static_cast<std::size_t>(P)) << "a rank slowed 50x left shards even";
        for (int r = 0; r + 1 < P; ++r) EXPECT_GT(w[r], w[P - 1]) << "rank " << r;
      }
      std::vector<double> all(w.begin(), w.end());
      all.resize(static_cast<std::size_t>(P), 0.0);
      std::vector<double> mx = all, mn = all;
      MPI_Allreduce(MPI_IN_PLACE, mx.data(), P, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
      MPI_Allreduce(MPI_IN_PLACE, mn.data(), P, MPI_DOUBLE, MPI_MIN, MPI_COMM_WORLD);
      EXPECT_EQ(mx, mn) << "ranks hold different weights";

      const bool exact = std::string(codec) == "fp16";
      auto input = [&](int rank, std::size_t i) {
        return exact ? static_cast<double>(static_cast<int>((i * 7 + 3 * rank) % 41) - 20)
                     : gwtest::value(gradwire::DType::Float32, gradwire::ReduceOp::Sum, 7, rank, i);
      };
      std::vector<float> x(n), a(n), b(n);
      for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<float>(input(me, i));
      bal.run(x.data(), a.data());
      even.run(x.data(), b.data());
      if (exact) {
        EXPECT_EQ(a, b) << codec << " n=" << n;
        for (std::size_t i = 0; i < n; ++i) {
          double s = 0;
          for (int r = 0; r < P; ++r) s += input(r, i);
          ASSERT_EQ(a[i], static_cast<float>(s)) << "element " << i;
        }
      } else {
        std::vector<gwplan::Vec> c(static_cast<std::size_t>(P), gwplan::Vec(n));
        std::vector<gwplan::Vec> d(static_cast<std::size_t>(P), gwplan::Vec(n, 0.0));
        gwplan::Vec S(n, 0.0);
        for (int r = 0; r < P; ++r)
          for (std::size_t i = 0; i < n; ++i) {
            c[r][i] = static_cast<double>(static_cast<float>(input(r, i)));
            S[i] += c[r][i];
          }
        const gwplan::Vec bound = gwplan::sra_bound(gradwire::Codec(gradwire::parse_codec(codec)), c, d, 1);
        for (std::size_t i = 0; i < n; ++i)
          ASSERT_LE(std::fabs(a[i] - S[i]), bound[i]) << codec << " n=" << n << " element " << i;
      }
    }
  }
}

TEST(UnevenShards, BadEnvironmentRejected) {
  gradwire::Communicator comm(MPI_COMM_WORLD);
  gradwire::PlanConfig cfg;
  cfg.count = 100;
  cfg.codec = "q8";
  cfg.algorithm = "sra";
  for (const char* bad : {"GRADWIRE_BALANCE_SHARDS=yes", "GRADWIRE_SLOW_RANK=1", "GRADWIRE_SLOW_RANK=0:0.5"}) {
    const std::string kv(bad);
    const std::string name = kv.substr(0, kv.find('=')), value = kv.substr(kv.find('=') + 1);
    setenv(name.c_str(), value.c_str(), 1);
    try {
      gradwire::Plan p(comm, cfg);
      ADD_FAILURE() << bad << " accepted";
    } catch (const gradwire::Error& e) {
      EXPECT_EQ(e.code(), gradwire::ErrorCode::InvalidArgument);
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
    unsetenv(name.c_str());
  }
}

// The C ABI's field: 0 by default; 1 makes a balanced plan (a slowed rank: uneven weights),
// whose result is the exact sum for fp16 on small integers; ranks that differ mismatch.
TEST(UnevenShards, CAbiField) {
  gw_plan_config_t cfg;
  ASSERT_EQ(gw_plan_config_init(&cfg), GW_SUCCESS);
  EXPECT_EQ(cfg.balance_shards, 0);
  gw_comm_t comm = nullptr;
  ASSERT_EQ(gw_comm_create(MPI_COMM_WORLD, &comm), GW_SUCCESS);
  int P = 1, me = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &P);
  MPI_Comm_rank(MPI_COMM_WORLD, &me);
  const std::size_t n = 5000;
  cfg.count = n;
  cfg.codec = "fp16";
  cfg.algorithm = "sra";
  cfg.balance_shards = 1;
  const std::string slow = std::to_string(P - 1) + ":8";
  setenv("GRADWIRE_SLOW_RANK", slow.c_str(), 1);
  gw_plan_t plan = nullptr;
  ASSERT_EQ(gw_plan_create(comm, &cfg, &plan), GW_SUCCESS);
  unsetenv("GRADWIRE_SLOW_RANK");
  std::vector<float> x(n), y(n);
  for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<float>(static_cast<int>((i + 5 * me) % 31) - 15);
  ASSERT_EQ(gw_plan_run(plan, x.data(), y.data()), GW_SUCCESS);
  for (std::size_t i = 0; i < n; ++i) {
    double sum = 0;
    for (int r = 0; r < P; ++r) sum += static_cast<int>((i + 5 * r) % 31) - 15;
    ASSERT_EQ(y[i], static_cast<float>(sum)) << "element " << i;
  }
  EXPECT_EQ(gw_plan_destroy(&plan), GW_SUCCESS);
  // The field reaches the plan: ranks that set it differently are a mismatch.
  if (P > 1) {
    cfg.balance_shards = me == 0 ? 1 : 0;
    EXPECT_EQ(gw_plan_create(comm, &cfg, &plan), GW_MISMATCH);
  }
  EXPECT_EQ(gw_comm_destroy(&comm), GW_SUCCESS);
}

// Ranks that disagree on balancing (rank 0 has it on through the environment) all fail with
// Mismatch naming the field, rather than cutting different layouts.
TEST(UnevenShards, SettingAgreedAcrossRanks) {
  gradwire::Communicator comm(MPI_COMM_WORLD);
  if (comm.size() < 2) GTEST_SKIP() << "needs 2 ranks";
  gradwire::PlanConfig cfg;
  cfg.count = 1000;
  cfg.codec = "q8";
  cfg.algorithm = "sra";
  if (comm.rank() == 0) setenv("GRADWIRE_BALANCE_SHARDS", "1", 1);
  const gwtest::Caught c = gwtest::catch_error([&] { gradwire::Plan p(comm, cfg); });
  unsetenv("GRADWIRE_BALANCE_SHARDS");
  EXPECT_TRUE(c.thrown);
  EXPECT_EQ(c.code, gradwire::ErrorCode::Mismatch);
  EXPECT_NE(c.message.find("balance_shards"), std::string::npos) << c.message;
}

}  // namespace
