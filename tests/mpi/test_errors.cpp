// Bad input and deadlines: each gives a gradwire::Error whose message names the rank, the
// collective, its count and dtype, and the cause.
#include <gtest/gtest.h>
#include <gmock/gmock.h>

#include <chrono>
#include <cstdint>
#include <limits>
#include <thread>

#include <gradwire/communicator.hpp>

using gradwire::Communicator;
using gradwire::DType;
using gradwire::Error;
using gradwire::ErrorCode;
using gradwire::ReduceOp;
using testing::HasSubstr;

namespace {

// Runs f, which must throw gradwire::Error with `code`; returns the message.
template <class F>
std::string error_of(F&& f, ErrorCode code) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no gradwire::Error thrown";
  return "";
}

class Errors : public testing::Test {
 protected:
  Communicator comm{MPI_COMM_WORLD};
  std::string me = "rank " + std::to_string(comm.rank()) + " of " + std::to_string(comm.size());
};

TEST_F(Errors, NullBufferWithNonzeroCount) {
  float x[5] = {};
  const std::string m = error_of(
      [&] { comm.allreduce(nullptr, x, 5, DType::Float32, ReduceOp::Sum); },
      ErrorCode::InvalidArgument);
  EXPECT_THAT(m, HasSubstr(me));
  EXPECT_THAT(m, HasSubstr("allreduce(count=5, dtype=float32, op=sum)"));
  EXPECT_THAT(m, HasSubstr("null send buffer with nonzero count"));
  // Zero elements need no buffer.
  comm.allreduce(nullptr, nullptr, 0, DType::Float32, ReduceOp::Sum);
}

TEST_F(Errors, CountOverflowsBytes) {
  float x = 0;
  const std::size_t count = std::numeric_limits<std::size_t>::max() / 2;
  const std::string m = error_of(
      [&] { comm.allreduce(&x, &x, count, DType::Float32, ReduceOp::Sum); },
      ErrorCode::InvalidArgument);
  EXPECT_THAT(m, HasSubstr("count=" + std::to_string(count)));
  EXPECT_THAT(m, HasSubstr("times element size 4 overflows size_t"));
}

TEST_F(Errors, CountAboveMpiLimit) {
  float x = 0;
  const std::string m = error_of(
      [&] { comm.broadcast(&x, std::size_t{1} << 31, DType::Float32, 0); },
      ErrorCode::Unsupported);
  EXPECT_THAT(m, HasSubstr("broadcast(count=2147483648, dtype=float32, root=0)"));
  EXPECT_THAT(m, HasSubstr("exceeds MPI's per-call limit"));
}

TEST_F(Errors, UnsupportedDtypeOpPair) {
  gradwire::bfloat16_t x[3] = {};
  const std::string m = error_of(
      [&] { comm.allreduce(x, x, 3, DType::BFloat16, ReduceOp::Prod); }, ErrorCode::Unsupported);
  EXPECT_THAT(m, HasSubstr("allreduce(count=3, dtype=bfloat16, op=prod)"));
  EXPECT_THAT(m, HasSubstr("prod is not supported on 16-bit floats"));
}

TEST_F(Errors, InvalidEnumValuesAndRoot) {
  float x = 0;
  EXPECT_THAT(error_of([&] { comm.allreduce(&x, &x, 1, static_cast<DType>(42), ReduceOp::Sum); },
                       ErrorCode::InvalidArgument),
              HasSubstr("invalid dtype value 42"));
  EXPECT_THAT(error_of([&] { comm.allreduce(&x, &x, 1, DType::Float32, static_cast<ReduceOp>(9)); },
                       ErrorCode::InvalidArgument),
              HasSubstr("invalid op value 9"));
  EXPECT_THAT(error_of([&] { comm.broadcast(&x, 1, DType::Float32, comm.size()); },
                       ErrorCode::InvalidArgument),
              HasSubstr("root " + std::to_string(comm.size()) + " is not a rank"));
}

TEST_F(Errors, UseAfterFinalize) {
  comm.finalize();
  float x = 1;
  const std::string m = error_of(
      [&] { comm.allreduce(&x, &x, 1, DType::Float32, ReduceOp::Sum); }, ErrorCode::Finalized);
  EXPECT_THAT(m, HasSubstr("allreduce(count=1, dtype=float32, op=sum)"));
  EXPECT_THAT(m, HasSubstr("used after finalize()"));
  EXPECT_THROW(comm.rank(), Error);
}

// Rank 0 starts a collective that the others join late: its wait passes the deadline and, with
// OnTimeout::Return, comes back as an error; the request stays valid and completes later.
TEST(Timeouts, WaitPastDeadlineReturnsError) {
  gradwire::Options o;
  o.timeout_s = 0.3;
  o.on_timeout = gradwire::Options::Policy::Return;
  o.check = 0;  // the late ranks call the blocking form: checked mode would (rightly) object
  Communicator comm(MPI_COMM_WORLD, o);
  if (comm.size() < 2) GTEST_SKIP() << "needs a peer that arrives late";
  float x = 1;
  if (comm.rank() == 0) {
    auto req = comm.iallreduce(&x, &x, 1, DType::Float32, ReduceOp::Sum);
    const std::string m = error_of([&] { req.wait(); }, ErrorCode::Timeout);
    EXPECT_THAT(m, HasSubstr("rank 0 of"));
    EXPECT_THAT(m, HasSubstr("iallreduce(count=1, dtype=float32, op=sum)"));
    EXPECT_THAT(m, HasSubstr("did not complete within 0.3"));
    while (!req.test()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  } else {
    std::this_thread::sleep_for(std::chrono::milliseconds(900));
    comm.allreduce(&x, &x, 1, DType::Float32, ReduceOp::Sum);
  }
  EXPECT_EQ(x, static_cast<float>(comm.size()));
}

TEST(Timeouts, BlockingCallPastDeadlineReturnsError) {
  gradwire::Options o;
  o.timeout_s = 0.3;
  o.on_timeout = gradwire::Options::Policy::Return;
  o.check = 0;  // the late ranks call the blocking form: checked mode would (rightly) object
  Communicator comm(MPI_COMM_WORLD, o);
  if (comm.size() < 2) GTEST_SKIP() << "needs a peer that arrives late";
  std::int64_t x = 1;
  if (comm.rank() == 0) {
    const std::string m = error_of(
        [&] { comm.broadcast(&x, 1, DType::Int64, 1); }, ErrorCode::Timeout);
    EXPECT_THAT(m, HasSubstr("broadcast(count=1, dtype=int64, root=1)"));
  } else {
    std::this_thread::sleep_for(std::chrono::milliseconds(900));
    comm.broadcast(&x, 1, DType::Int64, 1);
  }
  MPI_Barrier(MPI_COMM_WORLD);  // the orphaned broadcast has completed on every rank
}

}  // namespace
