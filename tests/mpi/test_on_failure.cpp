// The failure policy (Options::on_failure, GRADWIRE_ON_FAILURE): what each build accepts. The
// kill-a-rank tests themselves are tests/fault/run_shrink.sh (ULFM builds, under
// mpirun --with-ft ulfm).
#include <gtest/gtest.h>
#include <gmock/gmock.h>

#include <cstdlib>
#include <vector>

#include <gradwire/communicator.hpp>
#include <gradwire/config.hpp>
#include <gradwire/gradwire.h>

using gradwire::Communicator;
using gradwire::Error;
using gradwire::ErrorCode;
using gradwire::Options;
using testing::HasSubstr;

namespace {

Options shrink_policy() {
  Options o;
  o.on_failure = Options::FailurePolicy::Shrink;
  return o;
}

TEST(OnFailure, UnknownEnvironmentValueIsRejected) {
  setenv("GRADWIRE_ON_FAILURE", "retry", 1);
  try {
    Communicator c(MPI_COMM_WORLD);
    ADD_FAILURE() << "GRADWIRE_ON_FAILURE=retry accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
    EXPECT_THAT(e.what(), HasSubstr("GRADWIRE_ON_FAILURE='retry' is not one of: abort, shrink"));
  }
  unsetenv("GRADWIRE_ON_FAILURE");
}

TEST(OnFailure, StatusNamesPeerFailed) {
  EXPECT_STREQ(gw_status_string(GW_PEER_FAILED), "peer failed");
  EXPECT_EQ(static_cast<int>(ErrorCode::PeerFailed), GW_PEER_FAILED);
}

#if GRADWIRE_HAVE_ULFM

// No rank has died: shrink() gives a working communicator of every rank, rendezvous redone.
TEST(OnFailure, ShrinkWithoutFailureKeepsEveryRank) {
  Communicator c(MPI_COMM_WORLD, shrink_policy());
  Communicator s = c.shrink();
  EXPECT_EQ(s.size(), c.size());
  EXPECT_EQ(s.rank(), c.rank());
  EXPECT_GE(s.rendezvous_seconds(), 0.0);
  int x = 1;
  s.allreduce(&x, &x, 1, gradwire::DType::Int32, gradwire::ReduceOp::Sum);
  EXPECT_EQ(x, s.size());
}

TEST(OnFailure, CAbiShrinkWithoutFailure) {
  setenv("GRADWIRE_ON_FAILURE", "shrink", 1);
  gw_comm_t h = nullptr, out = nullptr;
  ASSERT_EQ(gw_comm_create(MPI_COMM_WORLD, &h), GW_SUCCESS) << gw_last_error();
  unsetenv("GRADWIRE_ON_FAILURE");
  ASSERT_EQ(gw_comm_shrink(h, &out), GW_SUCCESS) << gw_last_error();
  int a = 0, b = 0;
  gw_comm_size(h, &a);
  gw_comm_size(out, &b);
  EXPECT_EQ(a, b);
  gw_comm_destroy(&out);
  gw_comm_destroy(&h);
}

TEST(OnFailure, ShrinkNeedsTheShrinkPolicy) {
  Options o;
  o.on_failure = Options::FailurePolicy::Abort;
  Communicator c(MPI_COMM_WORLD, o);
  try {
    c.shrink();
    ADD_FAILURE() << "shrink() under the abort policy";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
    EXPECT_THAT(e.what(), HasSubstr("needs the shrink failure policy"));
  }
}

#else

// Without ULFM, asking for shrink says what it needs, at construction.
TEST(OnFailure, ShrinkPolicyNeedsUlfm) {
  try {
    Communicator c(MPI_COMM_WORLD, shrink_policy());
    ADD_FAILURE() << "shrink policy accepted without ULFM";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Unsupported);
    EXPECT_THAT(e.what(), HasSubstr("needs an MPI with the ULFM extension"));
    EXPECT_THAT(e.what(), HasSubstr("--with-ft ulfm"));
  }
}

TEST(OnFailure, ShrinkIsUnsupported) {
  Communicator c(MPI_COMM_WORLD);
  try {
    c.shrink();
    ADD_FAILURE() << "shrink() without ULFM";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Unsupported);
    EXPECT_THAT(e.what(), HasSubstr("ULFM"));
  }
  gw_comm_t h = nullptr, out = nullptr;
  ASSERT_EQ(gw_comm_create(MPI_COMM_WORLD, &h), GW_SUCCESS);
  EXPECT_EQ(gw_comm_shrink(h, &out), GW_UNSUPPORTED);
  EXPECT_EQ(out, nullptr);
  EXPECT_THAT(gw_last_error(), HasSubstr("ULFM"));
  gw_comm_destroy(&h);
}

#endif

}  // namespace
