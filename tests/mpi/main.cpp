// main() of the multi-rank suite: every rank runs every test; all ranks agree on each
// verdict; a test that hangs is named and the job aborted.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "watchdog.hpp"

namespace {

// Ranks other than 0 print only their failures, prefixed with the rank.
class RankFailures : public testing::EmptyTestEventListener {
 public:
  explicit RankFailures(int rank) : rank_(rank) {}
  void OnTestPartResult(const testing::TestPartResult& r) override {
    if (r.failed()) {
      std::fprintf(stderr, "[rank %d] %s:%d: Failure\n%s\n", rank_, r.file_name() ? r.file_name() : "?",
                   r.line_number(), r.summary());
    }
  }

 private:
  int rank_;
};

// After each test, every rank learns whether any rank failed it, so the verdict (and the exit
// status) is the same everywhere; ranks stay in step for the next test.
class AgreeOnVerdict : public testing::EmptyTestEventListener {
 public:
  explicit AgreeOnVerdict(int rank) : rank_(rank) {}
  void OnTestEnd(const testing::TestInfo& info) override {
    int failed = info.result()->Failed() ? 1 : 0, any = 0;
    MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (any && !failed && rank_ == 0) {
      std::fprintf(stderr, "[rank 0] %s.%s failed on another rank\n", info.test_suite_name(), info.name());
    }
    failures_ += any;
  }
  int failures() const { return failures_; }

 private:
  int rank_;
  int failures_ = 0;
};

// A test still running after GW_TEST_TIMEOUT seconds (default 120) is named and the job ends.
class HangGuard : public testing::EmptyTestEventListener {
 public:
  HangGuard(int rank, double timeout_s)
      : rank_(rank), timeout_s_(timeout_s), slot_([this](const gradwire::detail::CallInfo&, double) {
          std::fprintf(stderr, "gw_mpi_tests: rank %d: test %s did not finish within %.0f s; aborting\n",
                       rank_, name_.c_str(), timeout_s_);
          std::fflush(stderr);
          MPI_Abort(MPI_COMM_WORLD, 3);
        }) {}
  void OnTestStart(const testing::TestInfo& info) override {
    name_ = std::string(info.test_suite_name()) + "." + info.name();
    gradwire::detail::CallInfo call;
    call.collective = name_.c_str();
    call.has_data = false;
    slot_.arm(timeout_s_, call);
  }
  void OnTestEnd(const testing::TestInfo&) override { slot_.disarm(); }

 private:
  int rank_;
  double timeout_s_;
  std::string name_;
  gradwire::detail::WatchSlot slot_;
};

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  testing::InitGoogleTest(&argc, argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  const char* t = std::getenv("GW_TEST_TIMEOUT");
  const double timeout = t ? std::atof(t) : 120.0;

  auto& listeners = testing::UnitTest::GetInstance()->listeners();
  if (rank != 0) {
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new RankFailures(rank));
  }
  auto* verdict = new AgreeOnVerdict(rank);
  listeners.Append(verdict);
  listeners.Append(new HangGuard(rank, timeout));

  const int rc = RUN_ALL_TESTS();
  int worst = rc != 0 || verdict->failures() > 0 ? 1 : 0;
  MPI_Allreduce(MPI_IN_PLACE, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return worst;
}
