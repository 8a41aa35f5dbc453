// The DGC and PowerSGD fields of gw_plan_config_t (appended after the first plan fields):
// their defaults, that they reach the plan, and their errors.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <gradwire/gradwire.h>

namespace {

TEST(PlanCApiDgcPowerSgd, DefaultsReachThePlanAndBadValuesAreNamed) {
  gw_comm_t comm = nullptr;
  ASSERT_EQ(gw_comm_create(MPI_COMM_WORLD, &comm), GW_SUCCESS);
  gw_plan_config_t cfg;
  ASSERT_EQ(gw_plan_config_init(&cfg), GW_SUCCESS);
  EXPECT_EQ(cfg.momentum, 0.0f);
  EXPECT_EQ(cfg.momentum_masking, 1);
  EXPECT_EQ(cfg.clip_norm, 0.0f);
  EXPECT_EQ(cfg.warmup_steps, 0u);
  EXPECT_EQ(cfg.warmup_density, 0.25);
  EXPECT_EQ(cfg.powersgd_rank, 4u);
  EXPECT_EQ(cfg.shape_count, 0u);
  EXPECT_EQ(cfg.shapes, nullptr);

  // PowerSGD through C: a 20x10 matrix of rank 1 (the same on every rank) comes back.
  const size_t shapes[] = {20, 10};
  cfg.count = 200 + 5;
  cfg.algorithm = "powersgd";
  cfg.op = GW_AVG;
  cfg.powersgd_rank = 1;
  cfg.shape_count = 1;
  cfg.shapes = shapes;
  gw_plan_t plan = nullptr;
  ASSERT_EQ(gw_plan_create(comm, &cfg, &plan), GW_SUCCESS) << gw_last_error();
  std::vector<float> g(cfg.count), out(cfg.count);
  for (size_t i = 0; i < 20; ++i)
    for (size_t j = 0; j < 10; ++j) g[i * 10 + j] = static_cast<float>((i + 1) * (j % 3 + 1)) * 0.125f;
  for (size_t i = 200; i < cfg.count; ++i) g[i] = 0.5f;
  ASSERT_EQ(gw_plan_run(plan, g.data(), out.data()), GW_SUCCESS) << gw_last_error();
  for (size_t i = 0; i < cfg.count; ++i) EXPECT_NEAR(out[i], g[i], 1e-4 * 7.5) << i;
  gw_plan_stats_t st;
  ASSERT_EQ(gw_plan_stats(plan, &st), GW_SUCCESS);
  EXPECT_EQ(std::string(st.algorithm), "powersgd");
  EXPECT_EQ(gw_plan_destroy(&plan), GW_SUCCESS);

  cfg.shapes = nullptr;  // shape_count still 1
  EXPECT_EQ(gw_plan_create(comm, &cfg, &plan), GW_INVALID_ARGUMENT);
  EXPECT_NE(std::string(gw_last_error()).find("shapes"), std::string::npos) << gw_last_error();

  // DGC: a bad momentum is refused by name.
  ASSERT_EQ(gw_plan_config_init(&cfg), GW_SUCCESS);
  cfg.count = 100;
  cfg.codec = "topk:0.1";
  cfg.momentum = 1.5f;
  EXPECT_EQ(gw_plan_create(comm, &cfg, &plan), GW_INVALID_ARGUMENT);
  EXPECT_NE(std::string(gw_last_error()).find("momentum"), std::string::npos) << gw_last_error();
  cfg.momentum = 0.9f;
  cfg.warmup_steps = 10;
  EXPECT_EQ(gw_plan_create(comm, &cfg, &plan), GW_SUCCESS) << gw_last_error();
  std::vector<float> x(100, 1.0f), y(100);
  EXPECT_EQ(gw_plan_run(plan, x.data(), y.data()), GW_SUCCESS) << gw_last_error();
  EXPECT_EQ(gw_plan_destroy(&plan), GW_SUCCESS);
  EXPECT_EQ(gw_comm_destroy(&comm), GW_SUCCESS);
}

}  // namespace
