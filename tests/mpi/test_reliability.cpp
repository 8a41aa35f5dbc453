// Issue 15: no silent wrong answers (checked mode), every wait bounded, errors a program can
// recover from (OnTimeout::Return honoured everywhere, destructors that neither wait past the
// deadline nor abort), range-checked settings, arguments checked before anything is allocated,
// a checksummed residual file, and timeouts that name the culprit.
#include <gtest/gtest.h>
#include <gmock/gmock.h>
#include <zlib.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <thread>
#include <vector>

#include <gradwire/communicator.hpp>
#include <gradwire/gradwire.h>
#include <gradwire/plan.hpp>

#include "config.hpp"
#include "watchdog.hpp"

using gradwire::Communicator;
using gradwire::DType;
using gradwire::Error;
using gradwire::ErrorCode;
using gradwire::Plan;
using gradwire::PlanConfig;
using gradwire::ReduceOp;
using testing::HasSubstr;

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}
void sleep_s(double s) { std::this_thread::sleep_for(std::chrono::duration<double>(s)); }

// The code of the gradwire::Error f throws, or -1 when it returns; *msg gets the message.
template <class F>
int code_of(F&& f, std::string* msg = nullptr) {
  try {
    f();
  } catch (const Error& e) {
    if (msg) *msg = e.what();
    return static_cast<int>(e.code());
  }
  return -1;
}
constexpr int kCode(ErrorCode c) { return static_cast<int>(c); }

gradwire::Options fast_return(double timeout_s, int check = 0) {
  gradwire::Options o;
  o.timeout_s = timeout_s;
  o.on_timeout = gradwire::Options::Policy::Return;
  o.check = check;
  return o;
}

int world_size() {
  int n = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}
int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

// ---------------------------------------------------------------------------------------
// Checked mode: ranks that disagree all get Mismatch naming the field and the ranks.

class Checked : public testing::Test {
 protected:
  void SetUp() override {
    if (world_size() < 2) GTEST_SKIP() << "disagreement needs two ranks";
  }
  Communicator comm{MPI_COMM_WORLD, fast_return(20, 1)};
  int me = comm.rank();
  // Every rank must get Mismatch whose message names `field`, and the communicator must stay
  // usable (a correct allreduce afterwards).
  template <class F>
  void expect_mismatch(F&& f, const std::string& field, const std::string& detail) {
    std::string m;
    EXPECT_EQ(code_of(f, &m), kCode(ErrorCode::Mismatch)) << m;
    EXPECT_THAT(m, HasSubstr(field + " differs:")) << m;
    EXPECT_THAT(m, HasSubstr(detail)) << m;
    float x = 1;
    comm.allreduce(&x, &x, 1, DType::Float32, ReduceOp::Sum);
    EXPECT_EQ(x, static_cast<float>(comm.size()));
  }
  std::string others() const {
    std::string s;
    for (int r = 1; r < comm.size(); ++r) {
      if (r > 1) s.push_back(',');
      s.append(std::to_string(r));
    }
    return s;
  }
};

TEST_F(Checked, DtypeOpCountRootAndForm) {
  std::vector<double> buf(65538 * 2, 1.0);
  void* b = buf.data();
  expect_mismatch(
      [&] { comm.allreduce(b, b, 7, me == 0 ? DType::Float32 : DType::Int32, ReduceOp::Sum); },
      "dtype", "float32 on rank(s) 0, int32 on rank(s) " + others());
  expect_mismatch(
      [&] { comm.allreduce(b, b, 7, me == 0 ? DType::Float32 : DType::Float16, ReduceOp::Sum); },
      "dtype", "float16 on rank(s) " + others());
  expect_mismatch(
      [&] { comm.allreduce(b, b, 7, me == 0 ? DType::Float32 : DType::Float64, ReduceOp::Sum); },
      "dtype", "float64 on rank(s) " + others());
  expect_mismatch(
      [&] { comm.allreduce(b, b, 7, DType::Float32, me == 0 ? ReduceOp::Sum : ReduceOp::Max); },
      "op", "sum on rank(s) 0, max on rank(s) " + others());
  for (std::size_t n : {std::size_t{7}, std::size_t{65537}}) {
    expect_mismatch([&] { comm.allreduce(b, b, me == 0 ? n : n + 1, DType::Float32, ReduceOp::Sum); },
                    "count", std::to_string(n) + " on rank(s) 0, " + std::to_string(n + 1));
  }
  expect_mismatch([&] { comm.broadcast(b, 7, DType::Float32, me == 0 ? 0 : 1); }, "root",
                  "0 on rank(s) 0, 1 on rank(s) " + others());
  // Blocking on one rank, non-blocking on the others: a different collective.
  expect_mismatch(
      [&] {
        if (me == 0) comm.allreduce(b, b, 7, DType::Float32, ReduceOp::Sum);
        else comm.iallreduce(b, b, 7, DType::Float32, ReduceOp::Sum).wait();
      },
      "collective", "allreduce on rank(s) 0, iallreduce on rank(s) " + others());
  // The non-blocking forms check before they post.
  expect_mismatch(
      [&] { comm.iallgather(b, b, me == 0 ? 5 : 6, DType::Float32).wait(); }, "count",
      "5 on rank(s) 0, 6 on rank(s) " + others());
  expect_mismatch(
      [&] {
        comm.ireduce_scatter(b, b, 3, me == 0 ? DType::Float32 : DType::Int64, ReduceOp::Sum).wait();
      },
      "dtype", "int64 on rank(s) " + others());
  expect_mismatch([&] { comm.ibroadcast(b, me == 0 ? 3 : 4, DType::UInt8, 0).wait(); }, "count",
                  "3 on rank(s) 0, 4 on rank(s) " + others());
  expect_mismatch(
      [&] { comm.reduce_scatter(b, b, 3, DType::Float32, me == 0 ? ReduceOp::Min : ReduceOp::Sum); },
      "op", "min on rank(s) 0, sum on rank(s) " + others());
  expect_mismatch([&] { comm.allgather(b, b, 4, me == 0 ? DType::Float32 : DType::UInt8); },
                  "dtype", "uint8 on rank(s) " + others());
}

TEST_F(Checked, PlanOnOneRankDenseOnTheOthers) {
  std::vector<float> x(1000, 1.0f);
  expect_mismatch(
      [&] {
        if (me == 0) {
          PlanConfig cfg;
          cfg.count = x.size();
          cfg.codec = "q8";
          Plan p(comm, cfg);
        } else {
          comm.allreduce(x.data(), x.data(), x.size(), DType::Float32, ReduceOp::Sum);
        }
      },
      "collective", "plan create on rank(s) 0, allreduce on rank(s) " + others());
  // Two plans, run in a different order on rank 0: the plan ids differ.
  PlanConfig cfg;
  cfg.count = x.size();
  cfg.codec = "q8";
  Plan a(comm, cfg), b(comm, cfg);
  std::vector<float> out(x.size());
  expect_mismatch([&] { (me == 0 ? a : b).run(x.data(), out.data()); }, "plan", "on rank(s) 0");
  a.run(x.data(), out.data());  // agreeing runs still work
  EXPECT_NEAR(out[0], static_cast<float>(comm.size()), 0.05);
}

// Checked mode is on in this suite (tests/mpi/CMakeLists.txt sets GRADWIRE_CHECK=1).
TEST(CheckedEnv, OnInTheTestSuite) {
  const char* v = std::getenv("GRADWIRE_CHECK");
  ASSERT_NE(v, nullptr);
  EXPECT_STREQ(v, "1");
  if (world_size() < 2) GTEST_SKIP();
  Communicator comm(MPI_COMM_WORLD, fast_return(20));  // check = 0 in Options: off
  gradwire::Options o = fast_return(20);
  o.check = -1;  // from the environment: on
  Communicator env_comm(MPI_COMM_WORLD, o);
  float x[8] = {};
  EXPECT_EQ(code_of([&] {
              env_comm.allreduce(x, x, 2, comm.rank() == 0 ? DType::Float32 : DType::Int32,
                                 ReduceOp::Sum);
            }),
            kCode(ErrorCode::Mismatch));
}

// ---------------------------------------------------------------------------------------
// MPI errors become statuses.

// Without checked mode a count mismatch reaches MPI. Completing the non-blocking call used to
// end the process from MPI_Testall (Open MPI's fatal handler on MPI_COMM_WORLD, exit 15).
TEST(MpiErrors, NonBlockingCountMismatchIsAStatus) {
  if (world_size() < 2) GTEST_SKIP();
#if defined(__SANITIZE_ADDRESS__)
  // The erroneous call makes Open MPI 4.1's libnbc write past its own temporary buffer
  // (heap-buffer-overflow in mca_coll_libnbc, seen under ASan): MPI's bug on an erroneous
  // program, and the reason checked mode exists. Not run under the sanitizer.
  GTEST_SKIP() << "Open MPI overflows its own buffer on mismatched counts";
#endif
  // Leaked: MPI may keep writing it. Twice the size: with mismatched counts Open MPI's
  // segmented algorithms read and write past the smaller rank's count (seen under ASan).
  std::vector<float>* buf = new std::vector<float>(2 * 65538 + 64, 1.0f);
  int mpi_error = 0;
  {
    Communicator comm(MPI_COMM_WORLD, fast_return(1.0));
    const std::size_t n = comm.rank() == 0 ? 65537 : 65538;
    std::string m;
    const int code = code_of(
        [&] { comm.iallreduce(buf->data(), buf->data(), n, DType::Float32, ReduceOp::Sum).wait(); },
        &m);
    // Some rank sees MPI's truncation; the others' waits end at the deadline.
    EXPECT_TRUE(code == kCode(ErrorCode::Mpi) || code == kCode(ErrorCode::Timeout)) << code << m;
    if (code == kCode(ErrorCode::Mpi)) {
      EXPECT_THAT(m, HasSubstr("MPI_Testall failed"));
      EXPECT_THAT(m, HasSubstr("iallreduce(count=" + std::to_string(n)));
      mpi_error = 1;
    }
  }
  MPI_Allreduce(MPI_IN_PLACE, &mpi_error, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  EXPECT_EQ(mpi_error, 1);
}

TEST(MpiErrors, InvalidOpValuesAreInvalidArgument) {
  Communicator comm(MPI_COMM_WORLD);
  float x[4] = {};
  for (int op : {-1, -2, INT_MIN, 5}) {
    std::string m;
    EXPECT_EQ(code_of([&] { comm.allreduce(x, x, 4, DType::Float32, static_cast<ReduceOp>(op)); }, &m),
              kCode(ErrorCode::InvalidArgument)) << m;
    EXPECT_THAT(m, HasSubstr("invalid op value " + std::to_string(op)));
    EXPECT_EQ(code_of([&] { comm.reduce_scatter(x, x, 1, DType::Float32, static_cast<ReduceOp>(op)); }),
              kCode(ErrorCode::InvalidArgument));
    PlanConfig cfg;
    cfg.count = 4;
    cfg.op = static_cast<ReduceOp>(op);
    EXPECT_EQ(code_of([&] { Plan p(comm, cfg); }), kCode(ErrorCode::InvalidArgument));
  }
  gw_comm_t c = nullptr;
  ASSERT_EQ(gw_comm_create(MPI_COMM_WORLD, &c), GW_SUCCESS);
  EXPECT_EQ(gw_allreduce(c, x, x, 4, GW_FLOAT32, static_cast<gw_op_t>(-1)), GW_INVALID_ARGUMENT);
  EXPECT_EQ(gw_allreduce(c, x, x, 4, GW_FLOAT32, static_cast<gw_op_t>(INT_MIN)), GW_INVALID_ARGUMENT);
  gw_comm_destroy(&c);
}

// ---------------------------------------------------------------------------------------
// Recovery: OnTimeout::Return everywhere, bounded destructors, work continues.

TEST(Recovery, HundredCallsAfterARecoveredTimeout) {
  if (world_size() < 2) GTEST_SKIP() << "needs a peer that arrives late";
  Communicator comm(MPI_COMM_WORLD, fast_return(0.3));
  const int me = comm.rank(), P = comm.size();
  float x = 1;
  if (me == 0) {
    std::string m;
    EXPECT_EQ(code_of([&] { comm.allreduce(&x, &x, 1, DType::Float32, ReduceOp::Sum); }, &m),
              kCode(ErrorCode::Timeout)) << m;
    // The late ranks are named (progress board: they have not reached the call).
    EXPECT_THAT(m, HasSubstr("have not reached this call")) << m;
  } else {
    sleep_s(1.0);
    comm.allreduce(&x, &x, 1, DType::Float32, ReduceOp::Sum);
  }
  MPI_Barrier(MPI_COMM_WORLD);  // the program's own resynchronisation after the timeout
  PlanConfig cfg;
  cfg.count = 512;
  cfg.codec = "q8";
  Plan plan(comm, cfg);
  std::vector<float> g(512), out(512);
  int bad = 0;
  for (int i = 0; i < 100; ++i) {
    float y = static_cast<float>(me + i);
    comm.allreduce(&y, &y, 1, DType::Float32, ReduceOp::Sum);
    bad += y != static_cast<float>(P * i + P * (P - 1) / 2);
    for (std::size_t k = 0; k < g.size(); ++k) g[k] = 0.01f * static_cast<float>((k + i) % 50);
    plan.run(g.data(), out.data());
    for (std::size_t k = 0; k < g.size(); ++k)
      bad += std::fabs(out[k] - P * 0.01f * static_cast<float>((k + i) % 50)) > 0.02f * P;
  }
  EXPECT_EQ(bad, 0);
}

TEST(Recovery, ReturnHonouredByPlanCreationResidualFilesAndSplit) {
  if (world_size() < 2) GTEST_SKIP() << "needs a peer that arrives late";
  const int me = world_rank();
  PlanConfig cfg;
  cfg.count = 64;
  cfg.codec = "q8";
  const std::string path = testing::TempDir() + "gw_recovery_residual";
  // Each case: every rank makes a fresh communicator (and plan) on time; then rank 0 calls,
  // the others 1 s late. Rank 0 must get Timeout within its 0.3 s deadline (it used to abort
  // the job); the late ranks get an error or success of their own, never a hang.
  auto late_case = [&](const char* what, auto&& body) {
    Communicator comm(MPI_COMM_WORLD, fast_return(0.3));
    Plan plan(comm, cfg);
    std::vector<float> g(64, 0.3f), out(64);
    plan.run(g.data(), out.data());
    if (me != 0) sleep_s(1.0);
    const auto t = Clock::now();
    std::string m;
    const int code = code_of([&] { body(comm, plan); }, &m);
    if (me == 0) {
      EXPECT_EQ(code, kCode(ErrorCode::Timeout)) << what << ": " << m;
      EXPECT_LT(since(t), 1.5) << what;
    }
    MPI_Barrier(MPI_COMM_WORLD);
  };
  late_case("plan creation", [&](Communicator& c, Plan&) { Plan p(c, cfg); });
  late_case("split", [&](Communicator& c, Plan&) { c.split(0, 0); });
  late_case("save_residual", [&](Communicator&, Plan& p) { p.save_residual(path); });
  late_case("load_residual", [&](Communicator&, Plan& p) { p.load_residual(path + "-none"); });
}

TEST(Recovery, DestructorsNeitherWaitPastTheDeadlineNorAbort) {
  if (world_size() < 2) GTEST_SKIP() << "needs a peer that arrives late";
  const int me = world_rank();
  auto* x = new float[16]();  // leaked: the late ranks' data may still arrive
  double request_s = 0, plan_s = 0, comm_s = 0;
  {
    auto* comm = new Communicator(MPI_COMM_WORLD, fast_return(0.3));
    PlanConfig cfg;
    cfg.count = 16;
    auto* plan = new Plan(*comm, cfg);
    auto* out = new float[16]();
    if (me == 0) {
      auto* req = new gradwire::Request(comm->iallreduce(x, x, 16, DType::Float32, ReduceOp::Sum));
      EXPECT_EQ(code_of([&] { req->wait(); }), kCode(ErrorCode::Timeout));
      auto t = Clock::now();
      delete req;
      request_s = since(t);
      EXPECT_EQ(code_of([&] { plan->run(x, out); }), kCode(ErrorCode::Timeout));
      t = Clock::now();
      delete plan;
      plan_s = since(t);
      t = Clock::now();
      delete comm;
      comm_s = since(t);
    } else {
      sleep_s(1.5);  // rank 0 has given up and destroyed everything by now
      // Joining late: the iallreduce matches rank 0's abandoned one; the plan run may or may
      // not complete. Either way: an error or success, never a hang or an abort.
      code_of([&] { comm->iallreduce(x, x, 16, DType::Float32, ReduceOp::Sum).wait(); });
      code_of([&] { plan->run(x, out); });
      delete plan;
      delete comm;
    }
  }
  if (me == 0) {
    EXPECT_LT(request_s, 0.2);
    EXPECT_LT(plan_s, 0.2);
    EXPECT_LT(comm_s, 0.2);
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

// ---------------------------------------------------------------------------------------
// Settings: range-checked, agreed on in the rendezvous, unknown names warned about.

struct EnvVar {
  EnvVar(const char* n, const char* v) : name(n) { setenv(n, v, 1); }
  ~EnvVar() { unsetenv(name); }
  const char* name;
};

TEST(Settings, TimeoutRangeInfAndNone) {
  EXPECT_TRUE(std::isinf(gradwire::detail::parse_timeout("GRADWIRE_TIMEOUT", "inf")));
  EXPECT_TRUE(std::isinf(gradwire::detail::parse_timeout("GRADWIRE_TIMEOUT", "none")));
  EXPECT_EQ(gradwire::detail::parse_timeout("GRADWIRE_TIMEOUT", "1e6"), 1e6);
  for (const char* bad : {"1e10", "0", "-1", "nan", "5s", "", "1e400"}) {
    std::string m;
    EXPECT_EQ(code_of([&] { gradwire::detail::parse_timeout("GRADWIRE_TIMEOUT", bad); }, &m),
              kCode(ErrorCode::InvalidArgument)) << bad;
    EXPECT_THAT(m, HasSubstr("GRADWIRE_TIMEOUT='" + std::string(bad) + "'"));
    EXPECT_THAT(m, HasSubstr("1e+06], or inf"));
  }
  {
    EnvVar t("GRADWIRE_TIMEOUT", "inf"), i("GRADWIRE_INIT_TIMEOUT", "none");
    Communicator comm(MPI_COMM_WORLD);
    EXPECT_TRUE(std::isinf(comm.timeout_seconds()));
    float x = 1;
    comm.allreduce(&x, &x, 1, DType::Float32, ReduceOp::Sum);  // no overflowing deadline
    PlanConfig cfg;
    cfg.count = 100;
    cfg.codec = "q8";
    Plan p(comm, cfg);
    std::vector<float> g(100, 1.0f), out(100);
    p.run(g.data(), out.data());
    EXPECT_NEAR(out[0], static_cast<float>(comm.size()), 0.05);
  }
  for (const char* var : {"GRADWIRE_TIMEOUT", "GRADWIRE_INIT_TIMEOUT"}) {
    EnvVar t(var, "1e10");
    std::string m;
    EXPECT_EQ(code_of([&] { Communicator c(MPI_COMM_WORLD); }, &m), kCode(ErrorCode::InvalidArgument));
    EXPECT_THAT(m, HasSubstr(std::string(var) + "='1e10' is not a timeout"));
  }
  gradwire::Options o;
  o.timeout_s = 1e10;
  EXPECT_EQ(code_of([&] { Communicator c(MPI_COMM_WORLD, o); }), kCode(ErrorCode::InvalidArgument));
  o.timeout_s = HUGE_VAL;
  Communicator c(MPI_COMM_WORLD, o);
  EXPECT_TRUE(std::isinf(c.timeout_seconds()));
}

// A bad value on one rank: every rank fails at once (not after 2 x GRADWIRE_INIT_TIMEOUT),
// the others naming that rank.
TEST(Settings, BadValueOnOneRankFailsEveryRankPromptly) {
  if (world_size() < 2) GTEST_SKIP();
  const int me = world_rank();
  std::unique_ptr<EnvVar> bad;
  if (me == 1) bad = std::make_unique<EnvVar>("GRADWIRE_TIMEOUT", "abc");
  EnvVar init("GRADWIRE_INIT_TIMEOUT", "30");
  const auto t = Clock::now();
  std::string m;
  EXPECT_EQ(code_of([&] { Communicator c(MPI_COMM_WORLD); }, &m), kCode(ErrorCode::InvalidArgument));
  EXPECT_LT(since(t), 10.0);
  if (me == 1) {
    EXPECT_THAT(m, HasSubstr("GRADWIRE_TIMEOUT='abc'"));
  } else {
    EXPECT_THAT(m, HasSubstr("rejected on rank(s) 1"));
  }
}

TEST(Settings, UnknownVariablesAreNamed) {
  EnvVar typo("GRADWIRE_TIMEOUTT", "5");
  const std::string u = gradwire::detail::unknown_gradwire_env();
  EXPECT_THAT(u, HasSubstr("GRADWIRE_TIMEOUTT"));
  EXPECT_THAT(u, testing::Not(HasSubstr("GRADWIRE_CHECK,")));  // known ones are not listed
}

// ---------------------------------------------------------------------------------------
// Bad input: rejected before anything is allocated, on every rank.

TEST(BadInput, PlanCountsAboveWhatPlansSupport) {
  Communicator comm(MPI_COMM_WORLD, fast_return(20));
  for (std::size_t n : {std::numeric_limits<std::size_t>::max(),
                        std::numeric_limits<std::size_t>::max() / 4, std::size_t{1} << 40,
                        static_cast<std::size_t>(INT_MAX) + 1}) {
    PlanConfig cfg;
    cfg.count = n;
    cfg.codec = "q8";
    std::string m;
    EXPECT_EQ(code_of([&] { Plan p(comm, cfg); }, &m), kCode(ErrorCode::InvalidArgument)) << n;
    EXPECT_THAT(m, HasSubstr("count " + std::to_string(n) + " is above what plans support"));
  }
  // One rank's bad count: every rank fails (no rank left waiting).
  PlanConfig cfg;
  cfg.count = comm.rank() == 0 ? std::size_t{1} << 40 : 100;
  EXPECT_EQ(code_of([&] { Plan p(comm, cfg); }), kCode(ErrorCode::InvalidArgument));
  cfg.count = 100;
  cfg.dtype = static_cast<DType>(42);
  std::string m;
  EXPECT_EQ(code_of([&] { Plan p(comm, cfg); }, &m), kCode(ErrorCode::InvalidArgument));
  EXPECT_THAT(m, HasSubstr("invalid dtype value 42"));

  gw_comm_t c = nullptr;
  ASSERT_EQ(gw_comm_create(MPI_COMM_WORLD, &c), GW_SUCCESS);
  float x[4] = {};
  EXPECT_EQ(gw_allreduce_compressed(c, x, x, static_cast<size_t>(-1), GW_FLOAT32, GW_SUM, "q8",
                                    nullptr),
            GW_INVALID_ARGUMENT);
  gw_plan_config_t pc;
  gw_plan_config_init(&pc);
  pc.count = 4;
  pc.dtype = static_cast<gw_dtype_t>(42);
  gw_plan_t plan = nullptr;
  EXPECT_EQ(gw_plan_create(c, &pc, &plan), GW_INVALID_ARGUMENT);
  pc.dtype = GW_FLOAT32;
  ASSERT_EQ(gw_plan_create(c, &pc, &plan), GW_SUCCESS);
  EXPECT_EQ(gw_plan_run(plan, x, x), GW_SUCCESS);
  ASSERT_EQ(gw_comm_finalize(c), GW_SUCCESS);
  EXPECT_EQ(gw_plan_run(plan, x, x), GW_FINALIZED) << gw_last_error();
  gw_plan_destroy(&plan);
  gw_comm_destroy(&c);
}

// ---------------------------------------------------------------------------------------
// Residual file: checksum, finite values, no trailing bytes, version 2.

std::vector<char> slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}
void spit(const std::string& path, const std::vector<char>& b) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(b.data(), static_cast<std::streamsize>(b.size()));
}
// Rewrites the CRC-32 trailer so that only the check under test can fail.
void reseal(std::vector<char>& b) {
  const auto crc = static_cast<std::uint32_t>(
      crc32(0, reinterpret_cast<const Bytef*>(b.data()), static_cast<uInt>(b.size() - 4)));
  std::memcpy(b.data() + b.size() - 4, &crc, 4);
}

TEST(ResidualFile, ChecksumFiniteValuesTrailingBytesVersion) {
  Communicator comm(MPI_COMM_WORLD);
  PlanConfig cfg;
  cfg.count = 256;
  cfg.codec = "q4";
  Plan plan(comm, cfg);
  std::vector<float> g(256), out(256);
  for (std::size_t i = 0; i < g.size(); ++i) g[i] = 0.1f * std::sin(static_cast<float>(i));
  plan.run(g.data(), out.data());
  const std::string path = testing::TempDir() + "gw_resid_check_" + std::to_string(comm.size());
  plan.save_residual(path);
  plan.load_residual(path);  // the intact file loads
  const std::vector<char> good = comm.rank() == 0 ? slurp(path) : std::vector<char>();
  if (comm.rank() == 0) {
    ASSERT_EQ(good.size(), 24u + 256u * 8u + 4u);
    std::uint32_t version = 0;
    std::memcpy(&version, good.data() + 8, 4);
    EXPECT_EQ(version, 2u);
  }
  auto expect_rejected = [&](const char* what, auto&& edit, const std::string& text) {
    if (comm.rank() == 0) {
      std::vector<char> b = good;
      edit(b);
      spit(path, b);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    std::string m;
    EXPECT_EQ(code_of([&] { plan.load_residual(path); }, &m), kCode(ErrorCode::InvalidArgument)) << what;
    EXPECT_THAT(m, HasSubstr(text)) << what;
  };
  expect_rejected("flipped byte", [](std::vector<char>& b) { b[24 + 8 * 10 + 7] ^= 0x40; },
                  "fails its CRC-32 checksum");
  expect_rejected("trailing bytes", [](std::vector<char>& b) { b.push_back(0); }, "trailing byte");
  for (double v : {std::nan(""), HUGE_VAL, 1e300}) {
    expect_rejected(
        "non-finite",
        [v](std::vector<char>& b) {
          std::memcpy(b.data() + 24 + 8 * 3, &v, 8);
          reseal(b);
        },
        "non-finite or out-of-range value");
  }
  expect_rejected(
      "version 1",
      [](std::vector<char>& b) {
        const std::uint32_t v1 = 1;
        std::memcpy(b.data() + 8, &v1, 4);
        b.resize(b.size() - 4);
      },
      "version 1 residual file");
}

// One NaN gradient must not turn every later step into NaN through the residual.
TEST(ResidualFile, NonFiniteResidualIsNotKept) {
  Communicator comm(MPI_COMM_WORLD);
  PlanConfig cfg;
  cfg.count = 1000;
  cfg.codec = "topk:k=50";
  cfg.error_feedback = true;
  Plan plan(comm, cfg);
  std::vector<float> g(1000), out(1000);
  int non_finite_after = 0;
  for (int step = 0; step < 6; ++step) {
    for (std::size_t i = 0; i < g.size(); ++i) g[i] = 0.01f * static_cast<float>(i % 13);
    if (step == 0 && comm.rank() == 0) g[500] = std::nanf("");
    plan.run(g.data(), out.data());
    if (step >= 1)
      for (float v : out) non_finite_after += !std::isfinite(v);
  }
  EXPECT_EQ(non_finite_after, 0);
}

// ---------------------------------------------------------------------------------------
// Naming the culprit.

// A NaN on rank 1 in a quantizing plan: rank 1's error names its rank, the plan and the step;
// the others learn in the same call, not at the deadline, that rank 1 had a non-finite input
// (the error record in the messages, collectives/run_error.hpp).
TEST(Culprit, NanOnAnotherRankIsNamed) {
  if (world_size() < 2) GTEST_SKIP();
  Communicator comm(MPI_COMM_WORLD, fast_return(0.5));
  PlanConfig cfg;
  cfg.count = 1000;
  cfg.codec = "q8";
  cfg.algorithm = "sra";
  auto* plan = new Plan(comm, cfg);
  std::vector<float> g(1000, 0.5f), out(1000);
  if (comm.rank() == 1) g[10] = std::nanf("");
  std::string m;
  const int code = code_of([&] { plan->run(g.data(), out.data()); }, &m);
  if (comm.rank() == 1) {
    EXPECT_NE(code, -1);
    EXPECT_THAT(m, HasSubstr("rank 1 of"));
    EXPECT_THAT(m, HasSubstr("plan 1, step 0"));
    EXPECT_THAT(m, HasSubstr("non-finite"));
  } else {
    EXPECT_EQ(code, kCode(ErrorCode::InvalidArgument)) << m;
    EXPECT_THAT(m, HasSubstr("rank 1 found a non-finite value"));
  }
  delete plan;  // bounded: the run's deadline has passed
  MPI_Barrier(MPI_COMM_WORLD);
}

}  // namespace

// ---------------------------------------------------------------------------------------
// A watchdog slot that counts its expiries, and the seconds from `start` to the last one.
struct CountingSlot {
  std::atomic<int> fired{0};
  std::atomic<std::int64_t> at{0};
  gradwire::detail::CallInfo call;
  gradwire::detail::WatchSlot slot{[this](const gradwire::detail::CallInfo&, double) {
    at = gradwire::detail::monotonic_ns();
    fired.fetch_add(1);
  }};
  CountingSlot() {
    call.collective = "watchdog test";
    call.has_data = false;
  }
  // Arms with timeout_s and waits (2 s at most) until it fires: the seconds it took.
  double arm_until_fired(double timeout_s) {
    const std::int64_t t0 = gradwire::detail::monotonic_ns();
    slot.arm(timeout_s, call);
    for (int i = 0; i < 200 && fired.load() == 0; ++i) sleep_s(0.01);
    slot.disarm();
    return static_cast<double>(at.load() - t0) * 1e-9;
  }
};

// The watchdog looks every eighth of the shortest timeout (not 50 times a second), yet a slot
// armed with a shorter timeout than any before still fires on time: the thread is woken for
// it. (This suite's own hang guard keeps a 120 s slot armed: the thread sleeps 15 s.)

TEST(Watchdog, ShortDeadlineArmedDuringALongSleepFiresOnTime) {
  CountingSlot w;
  sleep_s(0.1);  // the thread has computed its long sleep
  const double after = w.arm_until_fired(0.25);
  ASSERT_EQ(w.fired.load(), 1);
  EXPECT_GE(after, 0.24);
  EXPECT_LT(after, 0.6);
  // Disarmed in time: never fires.
  w.slot.arm(0.25, w.call);
  sleep_s(0.1);
  w.slot.disarm();
  sleep_s(0.3);
  EXPECT_EQ(w.fired.load(), 1);
}

// Arming reads no clock: the thread times an arm from the look that first saw it, and looks
// every eighth of the shortest timeout. So an arm with a timeout the thread already knows (no
// wakeup) still fires within an eighth of it past its deadline, and re-arming before the
// deadline, again and again, is a new call each time: it never fires.
TEST(Watchdog, ArmWithAKnownTimeoutFiresWithinAnEighthAndReArmsNeverAccumulate) {
  CountingSlot w;
  w.slot.arm(0.4, w.call);  // a new shortest timeout: wakes the thread, which then looks every 50 ms
  w.slot.disarm();
  sleep_s(0.13);  // between two looks
  for (int i = 0; i < 10; ++i) {  // 1.5 s of calls of 0.15 s each: none passes 0.4 s
    w.slot.arm(0.4, w.call);
    sleep_s(0.15);
    w.slot.disarm();
  }
  EXPECT_EQ(w.fired.load(), 0);
  const double after = w.arm_until_fired(0.4);
  ASSERT_EQ(w.fired.load(), 1);
  EXPECT_GE(after, 0.39);               // never before the deadline (coarse clock: a few ms)
  EXPECT_LT(after, 0.4 + 0.05 + 0.15);  // an eighth late at most, plus the test's own slack
}
