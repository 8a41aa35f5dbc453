// Errors every rank learns together (collectives/run_error.hpp): one rank's non-finite input
// to a quantizing plan fails the same call on every rank with the same error, at once (not at
// GRADWIRE_TIMEOUT), and leaves no message behind: the next plan on the communicator works.
#include <gtest/gtest.h>
#include <gmock/gmock.h>

#include <chrono>
#include <cstdlib>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <gradwire/communicator.hpp>
#include <gradwire/plan.hpp>

using gradwire::Communicator;
using gradwire::DType;
using gradwire::Error;
using gradwire::ErrorCode;
using gradwire::Plan;
using gradwire::PlanCollective;
using gradwire::PlanConfig;
using testing::HasSubstr;

namespace {

struct Case {
  const char* name;
  PlanCollective collective;
  const char* codec;
  const char* algorithm;
  bool names_index;  // whether the agreed text says where
  int ranks_per_node = 0;  // hier: nodes of two ranks acted out on one host
  const char* overlap_chunk = nullptr;  // GRADWIRE_OVERLAP_CHUNK for the plan: pipelined
};

const Case kCases[] = {
    {"sra", PlanCollective::Allreduce, "q8", "sra", true},
    {"sra-sign", PlanCollective::Allreduce, "sign", "sra", true},
    {"shared-grid", PlanCollective::Allreduce, "q4", "shared-grid", false},
    {"allgather", PlanCollective::Allgather, "q8", "auto", true},
    // The NaN sits on a non-leader when the size is even: the node's sum carries it to the
    // leader, whose error must reach the node's other ranks too.
    {"hier", PlanCollective::Allreduce, "q8", "hier", true, 2},
    // Chunked pipelines: the NaN (element 1234) is in the third chunk, after two went out.
    {"allgather-chunked", PlanCollective::Allgather, "q8", "auto", true, 0, "512"},
    {"sra-chunked", PlanCollective::Allreduce, "q8", "sra", true, 0, "512"},
};

// FNV-1a of the agreed error: the text from its last "gradwire: " on (before it, each rank's
// own prefix names that rank, its plan and step). Equal on every rank iff the texts are.
long long hash_of(const std::string& s) {
  const std::size_t at = s.rfind("gradwire: ");
  unsigned long long h = 1469598103934665603ull;
  for (unsigned char c : s.substr(at == std::string::npos ? 0 : at)) h = (h ^ c) * 1099511628211ull;
  return static_cast<long long>(h >> 1);
}

class AgreedErrors : public testing::TestWithParam<Case> {};

TEST_P(AgreedErrors, NonFiniteOnOneRankFailsEveryRankAlike) {
  const Case& k = GetParam();
  gradwire::Options o;
  o.ranks_per_node = k.ranks_per_node;
  Communicator comm(MPI_COMM_WORLD, o);
  const int P = comm.size(), me = comm.rank();
  const std::size_t n = 3000;
  const int bad = P - 1;             // the rank with a NaN
  const std::size_t bad_index = 1234;
  PlanConfig cfg;
  cfg.collective = k.collective;
  cfg.count = n;
  cfg.codec = k.codec;
  cfg.algorithm = k.algorithm;
  if (k.overlap_chunk) setenv("GRADWIRE_OVERLAP_CHUNK", k.overlap_chunk, 1);
  Plan plan(comm, cfg);
  unsetenv("GRADWIRE_OVERLAP_CHUNK");
  std::vector<float> x(n), y(k.collective == PlanCollective::Allgather ? n * P : n);
  for (std::size_t i = 0; i < n; ++i) x[i] = std::sin(0.1f * static_cast<float>(i) + me);
  plan.run(x.data(), y.data());  // a good run first
  if (me == bad) x[bad_index] = std::numeric_limits<float>::quiet_NaN();

  const auto t0 = std::chrono::steady_clock::now();
  ErrorCode code = ErrorCode::Internal;
  std::string text;
  try {
    plan.run(x.data(), y.data());
    ADD_FAILURE() << "rank " << me << ": the run with a NaN on rank " << bad << " succeeded";
  } catch (const Error& e) {
    code = e.code();
    text = e.what();
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(code, ErrorCode::InvalidArgument) << text;
  if (k.ranks_per_node == 0) {
    EXPECT_THAT(text, HasSubstr("rank " + std::to_string(bad) + " found a non-finite value"));
  } else {  // the leaders' algorithm names a leader
    EXPECT_THAT(text, HasSubstr("found a non-finite value"));
    EXPECT_THAT(text, HasSubstr("hier: ranks named are among node leaders"));
  }
  if (k.names_index) {
    const std::size_t global = k.collective == PlanCollective::Allgather
                                   ? bad_index + n * static_cast<std::size_t>(bad)
                                   : bad_index;
    EXPECT_THAT(text, HasSubstr("at global index " + std::to_string(global)));
  }
  EXPECT_LT(s, 1.0) << "rank " << me << " learned of the error after " << s << " s";

  // The same text on every rank.
  long long h[2] = {hash_of(text), -hash_of(text)};
  comm.allreduce(h, h, 2, DType::Int64, gradwire::ReduceOp::Max);
  EXPECT_EQ(h[0], -h[1]) << "ranks got different errors; this one: " << text;

  // Nothing left in flight: a fresh plan on the same communicator runs and agrees.
  Plan again(comm, cfg);
  x[bad_index] = 0.5f;
  again.run(x.data(), y.data());
  float first = y[0], lo = first;
  comm.allreduce(&lo, &lo, 1, DType::Float32, gradwire::ReduceOp::Min);
  EXPECT_EQ(lo, first);
}

INSTANTIATE_TEST_SUITE_P(Plans, AgreedErrors, testing::ValuesIn(kCases),
                         [](const testing::TestParamInfo<Case>& i) {
                           std::string n = i.param.name;
                           for (char& c : n) c = c == '-' ? '_' : c;
                           return n;
                         });

}  // namespace
