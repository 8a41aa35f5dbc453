// The timeline through the C ABI (docs/timeline.md): gw_comm_create_timeline and
// gw_plan_set_label, their argument errors, and the trace rank 0 writes at gw_comm_destroy.
#include <gtest/gtest.h>
#include <mpi.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gradwire/gradwire.h>

namespace {

TEST(TimelineCApi, ArgumentErrors) {
  gw_comm_t comm = nullptr;
  EXPECT_EQ(gw_comm_create_timeline(MPI_COMM_WORLD, nullptr, &comm), GW_INVALID_ARGUMENT);
  EXPECT_NE(std::string(gw_last_error()).find("timeline path is NULL"), std::string::npos);
  EXPECT_EQ(gw_comm_create_timeline(MPI_COMM_WORLD, "", &comm), GW_INVALID_ARGUMENT);
  EXPECT_EQ(comm, nullptr);
  EXPECT_EQ(gw_plan_set_label(nullptr, "x"), GW_INVALID_ARGUMENT);
}

TEST(TimelineCApi, LabelledRunsInTheTraceRankZeroWrites) {
  int me = 0, P = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &me);
  MPI_Comm_size(MPI_COMM_WORLD, &P);
  long pid = static_cast<long>(getpid());
  MPI_Bcast(&pid, 1, MPI_LONG, 0, MPI_COMM_WORLD);
  const std::string path = "/tmp/gw_timeline_c_api_" + std::to_string(pid) + ".json";
  gw_comm_t comm = nullptr;
  ASSERT_EQ(gw_comm_create_timeline(MPI_COMM_WORLD, path.c_str(), &comm), GW_SUCCESS) << gw_last_error();
  gw_plan_config_t cfg;
  ASSERT_EQ(gw_plan_config_init(&cfg), GW_SUCCESS);
  cfg.count = 4096;
  cfg.codec = "q8";
  cfg.algorithm = "sra";
  gw_plan_t plan = nullptr;
  ASSERT_EQ(gw_plan_create(comm, &cfg, &plan), GW_SUCCESS) << gw_last_error();
  EXPECT_EQ(gw_plan_set_label(plan, nullptr), GW_INVALID_ARGUMENT);
  EXPECT_EQ(gw_plan_set_label(plan, "bucket 7: \"quoted\" fc.weight .. fc.bias"), GW_SUCCESS);
  std::vector<float> x(cfg.count, 1.0f), y(cfg.count);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(gw_plan_run(plan, x.data(), y.data()), GW_SUCCESS);
  EXPECT_EQ(gw_allreduce(comm, x.data(), y.data(), 16, GW_FLOAT32, GW_SUM), GW_SUCCESS);
  EXPECT_EQ(gw_plan_destroy(&plan), GW_SUCCESS);
  EXPECT_EQ(gw_comm_destroy(&comm), GW_SUCCESS);
  if (me != 0) return;
  std::ifstream f(path);
  ASSERT_TRUE(f.good()) << path << " was not written";
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string doc = ss.str();
  std::remove(path.c_str());
  EXPECT_EQ(doc.rfind("{\"traceEvents\":[", 0), 0u);
  // The label, escaped, names the track and each run; every rank is a process of its own.
  EXPECT_NE(doc.find("bucket 7: \\\"quoted\\\" fc.weight .. fc.bias (plan "), std::string::npos);
  std::size_t runs = 0;
  for (std::size_t p = doc.find("\"name\":\"run allreduce sra q8"); p != std::string::npos;
       p = doc.find("\"name\":\"run allreduce sra q8", p + 1))
    ++runs;
  EXPECT_EQ(runs, 3u * static_cast<std::size_t>(P));
  for (int r = 0; r < P; ++r)
    EXPECT_NE(doc.find("\"args\":{\"name\":\"rank " + std::to_string(r) + "\"}"), std::string::npos) << r;
  EXPECT_NE(doc.find("\"missing_ranks\":[]"), std::string::npos);
}

}  // namespace
