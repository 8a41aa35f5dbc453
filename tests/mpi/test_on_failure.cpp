// The failure policy (Options::on_failure, GRADWIRE_ON_FAILURE): what each build accepts. The
// ULFM half runs in the ULFM build as gw_ulfm_tests (ulfm_on_failure_np3, under mpirun
// --with-ft ulfm); the kill-a-rank tests are tests/fault/run_shrink.sh and run_respawn.sh.
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

// Elastic membership with nobody lost: respawn() is a copy; the agreed step is the largest
// given and the state comes from the lowest rank that gave it.
TEST(OnFailure, RespawnWithoutFailureAgreesOnStepAndSource) {
  Options o;
  o.on_failure = Options::FailurePolicy::Respawn;
  Communicator c(MPI_COMM_WORLD, o);
  const int last = c.size() - 1;
  Communicator r = c.respawn(static_cast<std::uint64_t>(c.rank() == last ? 9 : 4));
  EXPECT_EQ(r.size(), c.size());
  EXPECT_EQ(r.rank(), c.rank());
  EXPECT_FALSE(r.joined());
  EXPECT_EQ(r.resume_step(), 9u);
  std::vector<int> state(3, r.rank());
  r.share_state({{"state", state.data(), state.size(), gradwire::DType::Int32}});
  EXPECT_EQ(state, std::vector<int>(3, last));  // the source: the only rank at step 9
}

TEST(OnFailure, GrowByZeroKeepsTheCommunicator) {
  Communicator c(MPI_COMM_WORLD, shrink_policy());
  Communicator g = c.grow(0, 5);
  EXPECT_EQ(g.size(), c.size());
  EXPECT_EQ(g.resume_step(), 5u);
  int x = 1;
  g.allreduce(&x, &x, 1, gradwire::DType::Int32, gradwire::ReduceOp::Sum);
  EXPECT_EQ(x, g.size());
}

TEST(OnFailure, CAbiGrowByZeroAndShareState) {
  gw_comm_t h = nullptr, out = nullptr;
  ASSERT_EQ(gw_comm_create(MPI_COMM_WORLD, &h), GW_SUCCESS) << gw_last_error();
  ASSERT_EQ(gw_comm_grow(h, 0, 3, &out), GW_SUCCESS) << gw_last_error();
  uint64_t step = 0;
  int joined = -1, rank = -1;
  EXPECT_EQ(gw_comm_resume_step(out, &step), GW_SUCCESS);
  EXPECT_EQ(step, 3u);
  EXPECT_EQ(gw_comm_joined(out, &joined), GW_SUCCESS);
  EXPECT_EQ(joined, 0);
  gw_comm_rank(out, &rank);
  double w[2] = {static_cast<double>(rank), 1.5 * rank};
  const gw_state_buffer_t b = {"w", w, 2, GW_FLOAT64};
  ASSERT_EQ(gw_comm_share_state(out, &b, 1), GW_SUCCESS) << gw_last_error();
  EXPECT_EQ(w[0], 0.0);  // from rank 0: every rank gave the same step
  EXPECT_EQ(w[1], 0.0);
  const gw_state_buffer_t unnamed = {nullptr, w, 2, GW_FLOAT64};
  EXPECT_EQ(gw_comm_share_state(out, &unnamed, 1), GW_INVALID_ARGUMENT);
  gw_comm_destroy(&out);
  gw_comm_destroy(&h);
}

TEST(OnFailure, GrowCountMustAgree) {
  Communicator c(MPI_COMM_WORLD, shrink_policy());
  if (c.size() < 2) GTEST_SKIP() << "needs two ranks to disagree";
  try {
    c.grow(c.rank() == 0 ? 1 : 0, 0);
    ADD_FAILURE() << "grow() with different n accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
    EXPECT_THAT(e.what(), HasSubstr("n differs between ranks (from 0 to 1)"));
  }
}

TEST(OnFailure, ShareStateMismatchFailsEveryRank) {
  Communicator c(MPI_COMM_WORLD, shrink_policy());
  if (c.size() < 2) GTEST_SKIP() << "needs two ranks to disagree";
  std::vector<float> w(8, 1.0f);
  const std::size_t n = c.rank() == c.size() - 1 ? 7 : 8;
  try {
    c.share_state({{"weights", w.data(), n, gradwire::DType::Float32}});
    ADD_FAILURE() << "share_state with different counts accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Mismatch);
    EXPECT_THAT(e.what(), HasSubstr("the source rank 0 names {weights[8 float32]}"));
  }
}

TEST(OnFailure, RespawnNeedsTheRespawnPolicy) {
  Communicator c(MPI_COMM_WORLD, shrink_policy());
  try {
    c.respawn(0);
    ADD_FAILURE() << "respawn() under the shrink policy";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
    EXPECT_THAT(e.what(), HasSubstr("needs the respawn failure policy"));
  }
}

#else

// Without ULFM, asking for respawn or growing says what it needs, on every rank.
TEST(OnFailure, RespawnPolicyNeedsUlfm) {
  Options o;
  o.on_failure = Options::FailurePolicy::Respawn;
  try {
    Communicator c(MPI_COMM_WORLD, o);
    ADD_FAILURE() << "respawn policy accepted without ULFM";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Unsupported);
    EXPECT_THAT(e.what(), HasSubstr("GRADWIRE_ON_FAILURE=respawn needs an MPI with the ULFM extension"));
  }
  setenv("GRADWIRE_ON_FAILURE", "respawn", 1);
  gw_comm_t h = nullptr;
  EXPECT_EQ(gw_comm_create(MPI_COMM_WORLD, &h), GW_UNSUPPORTED);
  EXPECT_THAT(gw_last_error(), HasSubstr("--with-ft ulfm"));
  unsetenv("GRADWIRE_ON_FAILURE");
}

TEST(OnFailure, GrowAndRespawnAreUnsupported) {
  Communicator c(MPI_COMM_WORLD);
  for (int respawn = 0; respawn < 2; ++respawn) {
    try {
      if (respawn) {
        c.respawn(0);
      } else {
        c.grow(1, 0);
      }
      ADD_FAILURE() << "growing without ULFM";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::Unsupported);
      EXPECT_THAT(e.what(), HasSubstr(respawn ? "respawn() needs an MPI with the ULFM extension"
                                              : "grow() needs an MPI with the ULFM extension"));
    }
  }
  gw_comm_t h = nullptr, out = nullptr;
  ASSERT_EQ(gw_comm_create(MPI_COMM_WORLD, &h), GW_SUCCESS);
  EXPECT_EQ(gw_comm_grow(h, 2, 0, &out), GW_UNSUPPORTED);
  EXPECT_EQ(out, nullptr);
  EXPECT_THAT(gw_last_error(), HasSubstr("MPIX_Comm_agree"));
  EXPECT_EQ(gw_comm_respawn(h, 0, &out), GW_UNSUPPORTED);
  EXPECT_EQ(out, nullptr);
  int joined = -1;
  EXPECT_EQ(gw_comm_joined(h, &joined), GW_SUCCESS);
  EXPECT_EQ(joined, 0);
  gw_comm_destroy(&h);
}

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
