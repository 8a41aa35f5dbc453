// gradwire's handling of NCCL's and CUDA's state, checked against the stand-in (standin.hpp):
// a test of gradwire's order of calls and of what it frees, not of NCCL. The GPU run
// (scripts/gpu_check.sh) is the real check.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "gradwire/error.hpp"
#include "standin.hpp"
#include "transport/nccl_calls.hpp"
#include "transport/nccl_p2p.hpp"
#include "transport/stream_order.hpp"

namespace {

using gradwire::Error;
using gradwire::ErrorCode;
using gradwire::detail::CallInfo;
using gradwire::detail::NcclTransport;
namespace nccl = gradwire::detail::nccl;

class StandIn : public ::testing::Test {
 protected:
  void SetUp() override { standin::reset(); }
  void TearDown() override { standin::reset(); }
  static CallInfo call() {
    CallInfo c;
    c.collective = "plan allreduce sra q8 (device)";
    c.count = 1000;
    return c;
  }
};

std::string joined() {
  std::string s;
  for (const std::string& e : standin::world().log) s += e + "; ";
  return s;
}

// A non-blocking split stores the child only when the parent's job ends: gradwire polls the
// parent out of ncclInProgress first, then reads and settles the child.
TEST_F(StandIn, SplitDrainsTheParentBeforeReadingTheChild) {
  ncclComm_t parent = standin::make_comm("parent");
  standin::world().split_polls = 5;
  std::string error;
  const ncclComm_t child = nccl::split_child(parent, 0, 1, 10.0, error);
  ASSERT_NE(child, nullptr) << error;
  EXPECT_EQ(child->name, "child");
  EXPECT_EQ(parent->name, "parent") << "the parent stays usable";
  EXPECT_FALSE(parent->aborted);
  EXPECT_TRUE(standin::logged("CommSplit(parent, blocking=0)")) << joined();
  const int stored = standin::first("job stored child of parent");
  const int child_read = standin::first("GetAsyncError(child)");
  ASSERT_GE(stored, 0) << joined();
  EXPECT_GT(child_read, stored) << "the child was read before the parent's job ended: " << joined();
  // Every poll of the parent while in progress, then the one that ended the job.
  int parent_polls = 0;
  for (const std::string& e : standin::world().log) parent_polls += e == "GetAsyncError(parent)";
  EXPECT_EQ(parent_polls, 6) << joined();
}

// A parent that never leaves ncclInProgress: past the deadline gradwire aborts it (the job
// stops), aborts whatever child the job stored, and does not free the slot NCCL writes: the
// stand-in writing it afterwards is a use after free under ASan otherwise.
TEST_F(StandIn, SplitOfAStuckParentAbortsItAndKeepsTheSlot) {
  ncclComm_t parent = standin::make_comm("parent");
  ncclComm_t const original = parent;
  standin::world().split_polls = 1 << 30;
  std::string error;
  const ncclComm_t child = nccl::split_child(parent, 0, 0, 0.05, error);
  EXPECT_EQ(child, nullptr);
  EXPECT_EQ(parent, nullptr) << "the caller must not use an aborted parent";
  EXPECT_TRUE(original->aborted);
  EXPECT_NE(error.find("did not complete"), std::string::npos) << error;
  EXPECT_TRUE(standin::logged("CommAbort(child)")) << "the child the job stored: " << joined();
  ASSERT_NE(standin::world().last_slot, nullptr);
  *standin::world().last_slot = nullptr;  // a late store by NCCL's job: the slot must be alive
  delete standin::world().last_slot;        // gradwire leaks it on purpose; the test may not
}

TEST_F(StandIn, SplitWhoseChildFailsAbortsTheChild) {
  ncclComm_t parent = standin::make_comm("parent");
  standin::world().child_state = ncclSystemError;
  std::string error;
  EXPECT_EQ(nccl::split_child(parent, 0, 0, 10.0, error), nullptr);
  EXPECT_NE(error.find("child"), std::string::npos) << error;
  EXPECT_TRUE(standin::logged("CommAbort(child)")) << joined();
  EXPECT_FALSE(parent->aborted);
}

TEST_F(StandIn, SplitRefusedUpFrontLeavesNothingBehind) {
  ncclComm_t parent = standin::make_comm("parent");
  standin::world().split_refused = true;
  std::string error;
  EXPECT_EQ(nccl::split_child(parent, 0, 0, 10.0, error), nullptr);
  EXPECT_NE(error.find("ncclCommSplit failed"), std::string::npos) << error;
  EXPECT_FALSE(parent->aborted);
  EXPECT_FALSE(standin::logged("GetAsyncError(parent)")) << "no job to drain: " << joined();
}

// A post that fails inside a group: the group is closed before the error leaves the
// transport (else every later NCCL call on the thread is deferred into it), and the
// communicator is aborted (the peers' halves of the batch would never match).
TEST_F(StandIn, GroupClosedWhenAPostFailsInsideIt) {
  ncclComm_t comm = standin::make_comm("plan");
  {
    NcclTransport t(comm, 10.0, call());
    standin::world().results = {ncclSuccess, ncclInternalError};
    try {
      gradwire::coll::Batch batch(t);
      t.irecv(nullptr, 8, 1, 0);
      t.isend(nullptr, 8, 1, 0);
      batch.end();
      FAIL() << "the failed ncclSend did not throw";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::Nccl);
      EXPECT_NE(std::string(e.what()).find("ncclSend"), std::string::npos) << e.what();
    }
    EXPECT_EQ(standin::world().group_depth, 0) << joined();
    EXPECT_TRUE(comm->aborted);
    EXPECT_FALSE(t.live());
    EXPECT_THROW(t.isend(nullptr, 8, 1, 0), Error);  // no NCCL call on an aborted communicator
  }
  EXPECT_FALSE(comm->destroyed) << "an aborted communicator is not destroyed again";
}

// The algorithm throws between group_start and group_end (a failed decode, say): the Batch
// scope closes the group and the transport gives up its communicator.
TEST_F(StandIn, GroupClosedWhenTheAlgorithmThrowsInsideABatch) {
  ncclComm_t comm = standin::make_comm("plan");
  NcclTransport t(comm, 10.0, call());
  EXPECT_THROW(
      {
        gradwire::coll::Batch batch(t);
        t.irecv(nullptr, 8, 1, 0);
        throw std::runtime_error("a kernel launch failed");
      },
      std::runtime_error);
  EXPECT_EQ(standin::world().group_depth, 0) << joined();
  EXPECT_TRUE(comm->aborted) << joined();
  EXPECT_LT(standin::first("GroupEnd"), standin::first("CommAbort(plan)"))
      << "an abort inside an open group would be deferred into it: " << joined();
}

// A batch that ends normally: one group, the ordering event recorded after it.
TEST_F(StandIn, BatchEndsTheGroupOnce) {
  ncclComm_t comm = standin::make_comm("plan");
  NcclTransport t(comm, 10.0, call());
  gradwire::coll::Batch batch(t);
  t.irecv(nullptr, 8, 1, 0);
  t.isend(nullptr, 8, 1, 0);
  batch.end();
  EXPECT_EQ(standin::world().group_depth, 0);
  EXPECT_FALSE(comm->aborted);
  int done[4];
  EXPECT_EQ(t.test_some(done), 2);
  EXPECT_EQ(t.test_some(done), -1);
}

// NCCL's own allgatherv stand-in: the copy of the own block runs before the group opens.
TEST_F(StandIn, AllgathervCopiesOutsideTheGroup) {
  ncclComm_t comm = standin::make_comm("plan", 0, 3);
  NcclTransport t(comm, 10.0, call());
  const int counts[3] = {4, 4, 4}, displs[3] = {0, 4, 8};
  char buf[12] = {};
  t.iallgatherv(buf, 4, buf, counts, displs);
  EXPECT_FALSE(standin::logged("MemcpyAsync(s0, in group)")) << joined();
  const int copy = standin::first("MemcpyAsync(s0)");
  ASSERT_GE(copy, 0) << joined();
  EXPECT_LT(copy, standin::first("GroupStart")) << joined();
  EXPECT_EQ(standin::world().group_depth, 0);
}

// A call that stays in ncclInProgress past the timeout: the communicator is aborted (it
// would refuse every later call) and the error is a Timeout.
TEST_F(StandIn, TimeoutWhileInProgressAbortsTheCommunicator) {
  ncclComm_t comm = standin::make_comm("plan");
  NcclTransport t(comm, 0.05, call());
  standin::world().results = {ncclInProgress};
  try {
    t.iallreduce(nullptr, 10, gradwire::coll::Elem::F32, gradwire::coll::Reduce::Sum);
    FAIL() << "no timeout";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Timeout);
    EXPECT_NE(std::string(e.what()).find("aborted"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(comm->aborted);
  const std::size_t calls = standin::world().log.size();
  EXPECT_THROW(t.isend(nullptr, 8, 1, 0), Error);
  EXPECT_EQ(standin::world().log.size(), calls) << "a call reached NCCL after the abort";
}

// Closing a healthy communicator: finalize, settled, destroyed (not aborted).
TEST_F(StandIn, CloseFinalizesThenDestroys) {
  ncclComm_t comm = standin::make_comm("plan");
  nccl::close(comm, 10.0);
  EXPECT_TRUE(comm->finalized);
  EXPECT_TRUE(comm->destroyed);
  EXPECT_FALSE(comm->aborted);
}

// The ordering contract of communicator-level device calls: the private stream waits for an
// event recorded on the caller's stream before the collective, and the caller's stream waits
// for one recorded on the private stream after it.
TEST_F(StandIn, OrderingEventsRecordedOnTheCallersStreamAndWaited) {
  gradwire::detail::StreamOrder order;
  ASSERT_EQ(order.init(), cudaSuccess);
  const auto own = reinterpret_cast<cudaStream_t>(std::uintptr_t{0x40});
  ASSERT_EQ(order.enter(cudaStreamLegacy, own), cudaSuccess);
  standin::world().log.push_back("the collective");
  ASSERT_EQ(order.leave(own, cudaStreamLegacy), cudaSuccess);
  const auto& l = standin::world().log;
  ASSERT_EQ(l.size(), 5u) << joined();
  const std::string e1 = l[0].substr(l[0].find('(') + 1, l[0].find(',') - l[0].find('(') - 1);
  const std::string e2 = l[3].substr(l[3].find('(') + 1, l[3].find(',') - l[3].find('(') - 1);
  EXPECT_EQ(l[0], "EventRecord(" + e1 + ", legacy)");
  EXPECT_EQ(l[1], "StreamWaitEvent(s64, " + e1 + ")");
  EXPECT_EQ(l[3], "EventRecord(" + e2 + ", s64)");
  EXPECT_EQ(l[4], "StreamWaitEvent(legacy, " + e2 + ")");
}

}  // namespace
