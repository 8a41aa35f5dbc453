// Plans through the C ABI: create/run/start/stats/residual/destroy, and their errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include <gradwire/gradwire.h>

namespace {

TEST(PlanCApi, RunStartStatsAndErrors) {
  gw_comm_t comm = nullptr;
  ASSERT_EQ(gw_comm_create(MPI_COMM_WORLD, &comm), GW_SUCCESS);
  int P = 0, me = 0;
  gw_comm_size(comm, &P);
  gw_comm_rank(comm, &me);
  gw_plan_config_t cfg;
  ASSERT_EQ(gw_plan_config_init(&cfg), GW_SUCCESS);
  const size_t n = 1000;
  cfg.count = n;
  cfg.codec = "q8";
  cfg.algorithm = "sra";  // "auto" asks the cost model, which may pick dense here
  cfg.op = GW_AVG;
  gw_plan_t plan = nullptr;
  EXPECT_EQ(gw_plan_create(comm, &cfg, &plan), GW_SUCCESS) << gw_last_error();
  std::vector<float> x(n), out(n);
  for (size_t i = 0; i < n; ++i) x[i] = static_cast<float>(me + 1) * 0.001f * static_cast<float>(i % 97);
  EXPECT_EQ(gw_plan_run(plan, x.data(), out.data()), GW_SUCCESS) << gw_last_error();
  gw_request_t req = nullptr;
  EXPECT_EQ(gw_plan_start(plan, x.data(), out.data(), &req), GW_SUCCESS) << gw_last_error();
  EXPECT_EQ(gw_request_wait(req), GW_SUCCESS);
  EXPECT_EQ(gw_request_free(&req), GW_SUCCESS);
  // avg of (r+1) * 0.001 * (i % 97) over r: (P+1)/2 * 0.001 * (i % 97), q8 well within 0.01.
  std::size_t bad = 0;
  for (size_t i = 0; i < n; ++i)
    if (std::fabs(out[i] - (P + 1) / 2.0 * 0.001 * static_cast<double>(i % 97)) > 0.01) ++bad;
  EXPECT_EQ(bad, 0u);
  gw_plan_stats_t st;
  EXPECT_EQ(gw_plan_stats(plan, &st), GW_SUCCESS);
  EXPECT_EQ(std::string(st.algorithm), "sra");
  EXPECT_EQ(st.logical_bytes, n * 4);
  uint64_t step = 0;
  EXPECT_EQ(gw_plan_step(plan, &step), GW_SUCCESS);
  EXPECT_EQ(step, 2u);
  EXPECT_EQ(gw_plan_reset_residual(plan), GW_SUCCESS);
  EXPECT_EQ(gw_plan_run(nullptr, x.data(), out.data()), GW_INVALID_ARGUMENT);
  EXPECT_EQ(gw_plan_save_residual(plan, nullptr), GW_INVALID_ARGUMENT);
  EXPECT_EQ(gw_plan_destroy(&plan), GW_SUCCESS);
  EXPECT_EQ(plan, nullptr);
  EXPECT_EQ(gw_plan_destroy(&plan), GW_SUCCESS);  // NULL: no-op

  // Bad spec: every rank gets the error, with a message.
  cfg.codec = "q3";
  EXPECT_EQ(gw_plan_create(comm, &cfg, &plan), GW_INVALID_ARGUMENT);
  EXPECT_EQ(plan, nullptr);
  EXPECT_NE(std::string(gw_last_error()).find("q3"), std::string::npos) << gw_last_error();
  if (P > 1) {
    cfg.codec = "q4";
    cfg.count = me == 0 ? n : n + 1;
    EXPECT_EQ(gw_plan_create(comm, &cfg, &plan), GW_MISMATCH);
    EXPECT_NE(std::string(gw_last_error()).find("count"), std::string::npos) << gw_last_error();
  }
  EXPECT_EQ(gw_allreduce_compressed(comm, x.data(), out.data(), n, GW_FLOAT32, GW_SUM, "q8",
                                    "shared-grid"),
            GW_SUCCESS)
      << gw_last_error();
  // An "auto" plan carries the cost model's predictions; an explicit one none.
  cfg.codec = "q8";
  cfg.count = 4096;  // 16 KiB: above auto's floor (4 KiB), so the trial runs; never run here
  cfg.algorithm = nullptr;
  ASSERT_EQ(gw_plan_create(comm, &cfg, &plan), GW_SUCCESS) << gw_last_error();
  double pred = -1, dense = -1, comp = -1;
  EXPECT_EQ(gw_plan_predicted(plan, &pred, &dense, &comp), GW_SUCCESS);
  EXPECT_GT(pred, 0.0);
  EXPECT_GT(dense, 0.0);
  EXPECT_TRUE(pred == dense || pred == comp);
  EXPECT_EQ(gw_plan_predicted(plan, nullptr, nullptr, nullptr), GW_SUCCESS);
  EXPECT_EQ(gw_plan_destroy(&plan), GW_SUCCESS);
  EXPECT_EQ(gw_plan_predicted(nullptr, &pred, nullptr, nullptr), GW_INVALID_ARGUMENT);
  EXPECT_EQ(gw_comm_destroy(&comm), GW_SUCCESS);
}

}  // namespace

namespace {

// A compressed reduce-scatter plan through the C ABI: rank r gets block r of the sum.
TEST(PlanCApi, ReduceScatterPlan) {
  gw_comm_t comm = nullptr;
  ASSERT_EQ(gw_comm_create(MPI_COMM_WORLD, &comm), GW_SUCCESS);
  int P = 0, me = 0;
  gw_comm_size(comm, &P);
  gw_comm_rank(comm, &me);
  gw_plan_config_t cfg;
  ASSERT_EQ(gw_plan_config_init(&cfg), GW_SUCCESS);
  const size_t n = 500;
  cfg.collective = GW_PLAN_REDUCE_SCATTER;
  cfg.count = n;
  cfg.codec = "q8";
  gw_plan_t plan = nullptr;
  ASSERT_EQ(gw_plan_create(comm, &cfg, &plan), GW_SUCCESS) << gw_last_error();
  std::vector<float> x(n * P), out(n);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(me + 1) * 0.001f * static_cast<float>(i % 97);
  EXPECT_EQ(gw_plan_run(plan, x.data(), out.data()), GW_SUCCESS) << gw_last_error();
  // Sum over r of (r+1) * 0.001 * (i % 97): q8 rounds rank r's block (range <= 0.096 (r+1))
  // within one step, 0.096 (r+1) / 255.
  std::size_t bad = 0;
  const double tol = 0.096 / 255 * P * (P + 1) / 2.0 + 1e-5;
  for (size_t i = 0; i < n; ++i) {
    const double want = P * (P + 1) / 2.0 * 0.001 * static_cast<double>((me * n + i) % 97);
    if (std::fabs(out[i] - want) > tol) ++bad;
  }
  EXPECT_EQ(bad, 0u);
  gw_plan_stats_t st;
  EXPECT_EQ(gw_plan_stats(plan, &st), GW_SUCCESS);
  EXPECT_EQ(std::string(st.algorithm), "compressed-reduce-scatter");
  EXPECT_EQ(gw_plan_destroy(&plan), GW_SUCCESS);
  cfg.collective = static_cast<gw_plan_collective_t>(7);
  EXPECT_EQ(gw_plan_create(comm, &cfg, &plan), GW_INVALID_ARGUMENT);
  EXPECT_NE(std::string(gw_last_error()).find("_REDUCE_SCATTER"), std::string::npos) << gw_last_error();
  EXPECT_EQ(gw_comm_destroy(&comm), GW_SUCCESS);
}

// The entry points a foreign-language binding needs (docs/c-abi.md, "Bindings").
TEST(PlanCApi, BindingEntryPoints) {
  // MPI is up (tests/mpi/main.cpp initialized it): gw_mpi_init only reports the level.
  gw_thread_level_t level = GW_THREAD_LEVEL_MAX_ENUM_;
  int here = -1;
  ASSERT_EQ(gw_mpi_init(GW_THREAD_MULTIPLE, &level, &here), GW_SUCCESS) << gw_last_error();
  EXPECT_EQ(here, 0);
  int mpi_level = -1;
  MPI_Query_thread(&mpi_level);
  EXPECT_EQ(level == GW_THREAD_MULTIPLE, mpi_level == MPI_THREAD_MULTIPLE);
  EXPECT_LE(static_cast<int>(level), static_cast<int>(GW_THREAD_MULTIPLE));
  EXPECT_EQ(gw_mpi_init(static_cast<gw_thread_level_t>(9), nullptr, nullptr), GW_INVALID_ARGUMENT);
  EXPECT_NE(std::string(gw_last_error()).find("thread level"), std::string::npos);
  // Not ours to finalize: a no-op that leaves MPI running.
  EXPECT_EQ(gw_mpi_finalize(), GW_SUCCESS);
  int finalized = 1;
  MPI_Finalized(&finalized);
  EXPECT_EQ(finalized, 0);

  MPI_Fint world = 0;
  EXPECT_EQ(gw_mpi_comm_world_f(nullptr), GW_INVALID_ARGUMENT);
  ASSERT_EQ(gw_mpi_comm_world_f(&world), GW_SUCCESS);
  gw_comm_t comm = nullptr;
  ASSERT_EQ(gw_comm_create_f(world, &comm), GW_SUCCESS) << gw_last_error();
  int P = 0, me = 0, world_size = 0;
  gw_comm_size(comm, &P);
  gw_comm_rank(comm, &me);
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  EXPECT_EQ(P, world_size);

  // set_step: without error feedback a stochastic q4 plan's output is a function of (input,
  // step), so a plan moved to step 2 repeats what another plan did at its third run.
  gw_plan_config_t cfg;
  ASSERT_EQ(gw_plan_config_init(&cfg), GW_SUCCESS);
  EXPECT_EQ(cfg.memory, GW_MEMORY_HOST);
  const size_t n = 2048;
  cfg.count = n;
  cfg.codec = "q4";
  cfg.algorithm = "sra";
  cfg.op = GW_AVG;
  cfg.error_feedback = 0;
  cfg.seed = 11;
  gw_plan_t a = nullptr, b = nullptr;
  ASSERT_EQ(gw_plan_create(comm, &cfg, &a), GW_SUCCESS) << gw_last_error();
  ASSERT_EQ(gw_plan_create(comm, &cfg, &b), GW_SUCCESS) << gw_last_error();
  std::vector<float> x(n), ra(n), rb0(n), rb2(n);
  for (size_t i = 0; i < n; ++i)
    x[i] = std::sin(0.37f * static_cast<float>(i) + static_cast<float>(me));
  for (int s = 0; s < 3; ++s) ASSERT_EQ(gw_plan_run(a, x.data(), ra.data()), GW_SUCCESS);
  ASSERT_EQ(gw_plan_run(b, x.data(), rb0.data()), GW_SUCCESS);
  ASSERT_EQ(gw_plan_set_step(b, 2), GW_SUCCESS) << gw_last_error();
  uint64_t step = 0;
  EXPECT_EQ(gw_plan_step(b, &step), GW_SUCCESS);
  EXPECT_EQ(step, 2u);
  ASSERT_EQ(gw_plan_run(b, x.data(), rb2.data()), GW_SUCCESS);
  EXPECT_EQ(std::memcmp(ra.data(), rb2.data(), n * sizeof(float)), 0);
  EXPECT_NE(std::memcmp(rb0.data(), rb2.data(), n * sizeof(float)), 0);  // step matters
  EXPECT_EQ(gw_plan_set_step(nullptr, 1), GW_INVALID_ARGUMENT);

  // Stream forms on a host plan: a clear error, no request handed out.
  gw_request_t req = nullptr;
  EXPECT_EQ(gw_plan_run_stream(a, x.data(), ra.data(), nullptr), GW_INVALID_ARGUMENT);
  EXPECT_NE(std::string(gw_last_error()).find("Memory::Device"), std::string::npos)
      << gw_last_error();
  EXPECT_EQ(gw_plan_start_stream(a, x.data(), ra.data(), nullptr, &req), GW_INVALID_ARGUMENT);
  EXPECT_EQ(req, nullptr);
  EXPECT_EQ(gw_plan_start_stream(nullptr, x.data(), ra.data(), nullptr, &req), GW_INVALID_ARGUMENT);
  EXPECT_EQ(gw_plan_destroy(&a), GW_SUCCESS);
  EXPECT_EQ(gw_plan_destroy(&b), GW_SUCCESS);

  cfg.memory = static_cast<gw_memory_t>(5);
  EXPECT_EQ(gw_plan_create(comm, &cfg, &a), GW_INVALID_ARGUMENT);
  EXPECT_NE(std::string(gw_last_error()).find("GW_MEMORY_DEVICE"), std::string::npos);
  EXPECT_EQ(gw_comm_destroy(&comm), GW_SUCCESS);
}

}  // namespace
