// Plan::carry_residual: the error-feedback residual taken over by global element range in
// memory, as a save/load through the residual file would (without a failure here: the
// survivors' case is tests/fault/run_shrink.sh).
#include <gtest/gtest.h>
#include <gmock/gmock.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <gradwire/communicator.hpp>
#include <gradwire/gradwire.h>
#include <gradwire/plan.hpp>

using gradwire::Communicator;
using gradwire::Plan;
using gradwire::PlanCollective;
using gradwire::PlanConfig;

namespace {

std::string tmp_path(Communicator& c, const char* tag) {
  long long id = static_cast<long long>(::getpid());
  c.broadcast(&id, 1, gradwire::DType::Int64, 0);
  return "/tmp/gw-carry-" + std::to_string(id) + "-" + tag;
}

std::vector<double> saved(Plan& p, const std::string& path) {
  p.save_residual(path);
  std::ifstream f(path, std::ios::binary);
  f.seekg(16);
  std::uint64_t n = 0;
  f.read(reinterpret_cast<char*>(&n), 8);
  std::vector<double> r(n);
  f.read(reinterpret_cast<char*>(r.data()), static_cast<std::streamsize>(n * 8));
  return r;
}

// Residual of an sra plan carried into a shared-grid plan (other slots, same global range):
// the per-element totals agree within float32 rounding, and they are not all zero.
TEST(PlanCarry, TotalsSurviveAChangeOfAlgorithm) {
  Communicator comm(MPI_COMM_WORLD);
  const std::size_t n = 2000;
  PlanConfig a;
  a.count = n;
  a.codec = "q4";
  a.algorithm = "sra";
  Plan from(comm, a);
  std::vector<float> x(n);
  for (int step = 0; step < 3; ++step) {
    for (std::size_t i = 0; i < n; ++i)
      x[i] = std::sin(0.01f * static_cast<float>(i * (comm.rank() + 1) + step));
    from.run(x.data(), x.data());
  }
  PlanConfig b = a;
  b.algorithm = "shared-grid";
  Plan to(comm, b);
  to.carry_residual(from);
  const std::string path_a = tmp_path(comm, "a"), path_b = tmp_path(comm, "b");
  const auto before = saved(from, path_a);
  const auto after = saved(to, path_b);
  ASSERT_EQ(before.size(), after.size());
  double biggest = 0;
  for (std::size_t i = 0; i < n; ++i) {
    EXPECT_NEAR(after[i], before[i], 1e-6 * (1 + std::fabs(before[i]))) << "element " << i;
    biggest = std::max(biggest, std::fabs(before[i]));
  }
  EXPECT_GT(biggest, 0.0) << "nothing to carry: the test would prove nothing";
  int read = 1;  // every rank has read both files before rank 0 removes them
  comm.allreduce(&read, &read, 1, gradwire::DType::Int32, gradwire::ReduceOp::Sum);
  if (comm.rank() == 0) {
    std::remove(path_a.c_str());
    std::remove(path_b.c_str());
  }
}

TEST(PlanCarry, DifferentGlobalRangeIsRejectedOnEveryRank) {
  Communicator comm(MPI_COMM_WORLD);
  PlanConfig a;
  a.count = 100;
  a.codec = "q8";
  Plan from(comm, a);
  a.count = 101;
  Plan to(comm, a);
  try {
    to.carry_residual(from);
    ADD_FAILURE() << "carry between 100 and 101 elements accepted";
  } catch (const gradwire::Error& e) {
    EXPECT_EQ(e.code(), gradwire::ErrorCode::InvalidArgument);
    EXPECT_THAT(e.what(), testing::HasSubstr("covers 100 global elements"));
  }
}

TEST(PlanCarry, CAbi) {
  gw_comm_t c = nullptr;
  ASSERT_EQ(gw_comm_create(MPI_COMM_WORLD, &c), GW_SUCCESS);
  gw_plan_config_t cfg;
  gw_plan_config_init(&cfg);
  cfg.count = 64;
  cfg.codec = "q8";
  gw_plan_t p1 = nullptr, p2 = nullptr;
  ASSERT_EQ(gw_plan_create(c, &cfg, &p1), GW_SUCCESS);
  ASSERT_EQ(gw_plan_create(c, &cfg, &p2), GW_SUCCESS);
  EXPECT_EQ(gw_plan_carry_residual(p2, p1), GW_SUCCESS) << gw_last_error();
  EXPECT_EQ(gw_plan_carry_residual(p2, nullptr), GW_INVALID_ARGUMENT);
  gw_plan_destroy(&p2);
  gw_plan_destroy(&p1);
  gw_comm_destroy(&c);
}

}  // namespace
