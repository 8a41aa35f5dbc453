// "auto" re-decided from the plan's own runs (collectives/auto_switch.hpp): one rank that
// measures a contradiction makes every rank switch at the same run, and the error-feedback
// residual is neither lost nor doubled across switches. The trial's figures come from the
// cost cache file (GRADWIRE_COST_CACHE), so the plan starts on sra whatever this machine
// measures; the run times a rank records are replaced by the test (set_run_time_for_tests).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <gradwire/codec.hpp>
#include <gradwire/communicator.hpp>
#include <gradwire/gradwire.h>
#include <gradwire/plan.hpp>

#include "collectives/auto_switch.hpp"
#include "collectives/cost_model.hpp"
#include "collectives/cost_probe.hpp"
#include "collectives/residual_file.hpp"

using gradwire::Communicator;
using gradwire::Plan;
using gradwire::PlanConfig;
using gradwire::coll::AutoPick;

namespace {

constexpr std::size_t kCount = 1 << 14;  // 64 KB per rank: above the 4 KiB floor, quick

bool same_everywhere(const std::string& s) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  std::uint64_t mm[2] = {h, ~h};
  MPI_Allreduce(MPI_IN_PLACE, mm, 2, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
  return mm[0] == ~mm[1];
}

// A cache file whose trial says sra at 1 ms beats dense at 4 ms for (codec, kCount), set as
// GRADWIRE_COST_CACHE while the object lives.
class ForcedTrial {
 public:
  explicit ForcedTrial(const std::string& codec) {
    long long pid = static_cast<long long>(getpid());
    MPI_Bcast(&pid, 1, MPI_LONG_LONG, 0, MPI_COMM_WORLD);
    path_ = "/tmp/gw_auto_switch_" + std::to_string(pid);
    auto check = [](int rc, const char* what) {
      if (rc != MPI_SUCCESS) throw std::runtime_error(what);
    };
    const std::string key = gradwire::coll::cost_cache_key(MPI_COMM_WORLD, check);
    int me = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    if (me == 0) {
      std::ofstream f(path_, std::ios::trunc);
      f << "gradwire-cost-v1 " << key << " trial sra/" << gradwire::parse_codec(codec).to_string()
        << "/ef1/sum " << kCount << " 0.004 0.001\n";
    }
    MPI_Barrier(MPI_COMM_WORLD);
    setenv("GRADWIRE_COST_CACHE", path_.c_str(), 1);
  }
  ~ForcedTrial() {
    unsetenv("GRADWIRE_COST_CACHE");
    gradwire::coll::set_run_time_for_tests(nullptr);
    MPI_Barrier(MPI_COMM_WORLD);
    int me = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    if (me == 0) std::remove(path_.c_str());
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

float input(int rank, std::uint64_t step, std::size_t i) {
  return std::sin(0.37f * static_cast<float>(i % 1000) + 1.3f * static_cast<float>(rank) +
                  0.11f * static_cast<float>(step)) *
         (1.0f + static_cast<float>(i % 7));
}

// The residual summed over ranks, by global element (what save_residual writes), everywhere.
std::vector<double> residual(Plan& p, const std::string& path) {
  p.save_residual(path);
  // Rank 0 reads (it writes the file, and the next save rewrites it) and shares it.
  std::vector<double> sum(kCount, 0.0);
  int me = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &me);
  if (me == 0) {
    EXPECT_EQ(gradwire::coll::read_residual_file(path, gradwire::PlanCollective::Allreduce, kCount,
                                                 sum),
              "");
  }
  MPI_Bcast(sum.data(), static_cast<int>(kCount), MPI_DOUBLE, 0, MPI_COMM_WORLD);
  return sum;
}

// One rank (the last) records every sra run as taking 1 s: the mean over ranks is at least
// 30x dense's predicted 4 ms (8 ranks at most). Every rank switches to dense at the first
// agreement, at the same run, and stays there (dense's measured time is far below sra's).
TEST(PlanAutoSwitch, OneRankContradictsAllRanksSwitchTogether) {
  Communicator comm(MPI_COMM_WORLD);
  ForcedTrial trial("q8");
  const int me = comm.rank(), P = comm.size();
  // Dense 4 ms everywhere, sra 1 ms everywhere but on the last rank: only that rank's
  // figures contradict the trial (this machine's own noise plays no part).
  const bool odd_one = me == P - 1;
  gradwire::coll::set_run_time_for_tests([odd_one](AutoPick ran, double) {
    return ran == AutoPick::Dense ? 0.004 : odd_one ? 1.0 : 0.001;
  });
  PlanConfig cfg;
  cfg.count = kCount;
  cfg.codec = "q8";
  Plan plan(comm, cfg);
  ASSERT_EQ(plan.stats().algorithm, "sra") << plan.stats().decision;
  EXPECT_EQ(plan.stats().cost_source, "trial:cache-file");
  EXPECT_EQ(plan.stats().decision.rfind("trial: sra", 0), 0u) << plan.stats().decision;
  std::vector<float> x(kCount), out(kCount);
  int switched_at = -1;
  for (int step = 0; step < 12; ++step) {
    for (std::size_t i = 0; i < kCount; ++i) x[i] = input(me, static_cast<std::uint64_t>(step), i);
    plan.run(x.data(), out.data());
    const gradwire::PlanStats& s = plan.stats();
    // Every rank ran the same algorithm, with the same bits, and knows the same figures.
    char buf[160];
    std::snprintf(buf, sizeof buf, "%s %d %.17g %.17g", s.algorithm.c_str(), s.switches,
                  s.measured_dense_s, s.measured_compressed_s);
    EXPECT_TRUE(same_everywhere(buf)) << "step " << step << ": " << buf;
    EXPECT_TRUE(same_everywhere(std::string(reinterpret_cast<const char*>(out.data()), kCount * 4)))
        << "step " << step;
    if (switched_at < 0 && s.algorithm == "dense") switched_at = step;
  }
  EXPECT_EQ(switched_at, 3) << plan.stats().decision;  // the first agreement: after 3 runs
  EXPECT_EQ(plan.stats().algorithm, "dense");
  EXPECT_EQ(plan.stats().switches, 1) << plan.stats().decision;
  // The mean over ranks of their medians: the odd one's 1 s and the others' 1 ms.
  EXPECT_NEAR(plan.stats().measured_compressed_s, (1.0 + 0.001 * (P - 1)) / P, 1e-12);
  EXPECT_GT(plan.stats().measured_dense_s, 0.0);
  EXPECT_EQ(plan.stats().decision.rfind("measured: dense", 0), 0u) << plan.stats().decision;
}

// sra (3 runs) -> dense (4 runs: judged on the 3 after the first) -> sra (2 runs), switched by
// what rank 0 records. Error feedback's ledger: the sum of every result equals the sum of every
// input less the residual left at the end. The residual is untouched while dense runs, and the
// sra runs after the switch back deliver it: a residual lost or added twice at a switch breaks
// the ledger by the size of q4's rounding (~10 % of the values), far beyond float rounding.
TEST(PlanAutoSwitch, ResidualIsConservedAcrossSwitches) {
  Communicator comm(MPI_COMM_WORLD);
  ForcedTrial trial("q4");
  const int me = comm.rank(), P = comm.size();
  // Dense 4 ms and sra 1 ms, but on rank 0: sra 10 s (phase 0: switch to dense), then dense
  // 100 s (phase 1: back to sra).
  int phase = 0;
  const bool first = me == 0;
  gradwire::coll::set_run_time_for_tests([&phase, first](AutoPick ran, double) {
    if (ran == AutoPick::Dense) return first && phase == 1 ? 100.0 : 0.004;
    return first && phase == 0 ? 10.0 : 0.001;
  });
  PlanConfig cfg;
  cfg.count = kCount;
  cfg.codec = "q4";
  Plan plan(comm, cfg);
  ASSERT_EQ(plan.stats().algorithm, "sra");
  std::vector<float> x(kCount), out(kCount);
  std::vector<double> delivered(kCount, 0.0), given(kCount, 0.0);
  std::vector<double> before_dense;
  std::vector<std::string> ran;
  for (int step = 0; step < 9; ++step) {
    if (step == 3) phase = 1;  // the dense runs are slow on rank 0
    for (std::size_t i = 0; i < kCount; ++i) {
      x[i] = input(me, static_cast<std::uint64_t>(step), i);
      for (int r = 0; r < P; ++r) given[i] += input(r, static_cast<std::uint64_t>(step), i);
    }
    if (step == 3) before_dense = residual(plan, trial.path() + ".res");
    plan.run(x.data(), out.data());
    ran.push_back(plan.stats().algorithm);
    for (std::size_t i = 0; i < kCount; ++i) delivered[i] += out[i];
    if (step == 6) {
      // Four dense runs later, the residual is still the one sra left.
      ASSERT_EQ(ran[6], "dense");
      EXPECT_EQ(residual(plan, trial.path() + ".res"), before_dense);
    }
  }
  const std::vector<std::string> want = {"sra",   "sra",   "sra", "dense", "dense",
                                         "dense", "dense", "sra", "sra"};
  EXPECT_EQ(ran, want) << plan.stats().decision;
  EXPECT_EQ(plan.stats().switches, 2);
  EXPECT_EQ(plan.stats().decision.rfind("back to sra", 0), 0u) << plan.stats().decision;
  const std::vector<double> left = residual(plan, trial.path() + ".res");
  double worst = 0, scale = 0, res_norm = 0;
  for (std::size_t i = 0; i < kCount; ++i) {
    worst = std::max(worst, std::fabs(delivered[i] + left[i] - given[i]));
    scale = std::max(scale, std::fabs(given[i]));
    res_norm = std::max(res_norm, std::fabs(left[i]));
  }
  EXPECT_GT(res_norm, 1e-3 * scale);      // q4 leaves a residual worth checking
  EXPECT_LT(worst, 1e-5 * scale * 9 * P);  // float rounding of 9 steps of P ranks
  if (me == 0) std::remove((trial.path() + ".res").c_str());
}

// The C ABI's stats carry the decision, the switches and the measured times.
TEST(PlanAutoSwitch, CStatsCarryTheDecision) {
  ForcedTrial trial("q8");
  gradwire::coll::set_run_time_for_tests(
      [](AutoPick ran, double) { return ran == AutoPick::Dense ? 0.004 : 1.0; });
  gw_comm_t comm = nullptr;
  ASSERT_EQ(gw_comm_create(MPI_COMM_WORLD, &comm), GW_SUCCESS);
  gw_plan_config_t cfg;
  gw_plan_config_init(&cfg);
  cfg.count = kCount;
  cfg.codec = "q8";
  gw_plan_t plan = nullptr;
  ASSERT_EQ(gw_plan_create(comm, &cfg, &plan), GW_SUCCESS);
  gw_plan_stats_t st;
  ASSERT_EQ(gw_plan_stats(plan, &st), GW_SUCCESS);
  EXPECT_STREQ(st.algorithm, "sra");
  EXPECT_EQ(std::string(st.decision).rfind("trial: sra", 0), 0u) << st.decision;
  EXPECT_EQ(st.switches, 0);
  std::vector<float> x(kCount, 1.0f), out(kCount);
  for (int i = 0; i < 8; ++i) ASSERT_EQ(gw_plan_run(plan, x.data(), out.data()), GW_SUCCESS);
  ASSERT_EQ(gw_plan_stats(plan, &st), GW_SUCCESS);
  EXPECT_STREQ(st.algorithm, "dense");
  EXPECT_EQ(st.switches, 1);
  EXPECT_DOUBLE_EQ(st.measured_dense_s, 0.004);
  EXPECT_DOUBLE_EQ(st.measured_compressed_s, 1.0);
  EXPECT_EQ(std::string(st.decision).rfind("measured: dense", 0), 0u) << st.decision;
  EXPECT_EQ(gw_plan_destroy(&plan), GW_SUCCESS);
  EXPECT_EQ(gw_comm_destroy(&comm), GW_SUCCESS);
}

}  // namespace
