// The rendezvous: node layout, sub-communicators, the caller's traffic left alone, and a
// rank that does not arrive.
#include <gtest/gtest.h>
#include <gmock/gmock.h>

#include <chrono>
#include <thread>

#include <gradwire/communicator.hpp>

#include "bootstrap.hpp"
#include "device_assign.hpp"

using gradwire::Communicator;
using gradwire::DType;
using gradwire::ReduceOp;
using testing::HasSubstr;

namespace {

TEST(Rendezvous, LayoutMatchesMpi) {
  Communicator comm(MPI_COMM_WORLD);
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  EXPECT_EQ(comm.rank(), rank);
  EXPECT_EQ(comm.size(), size);
  // One host: MPI's shared-memory split puts every rank on node 0.
  EXPECT_EQ(comm.node_count(), 1);
  EXPECT_EQ(comm.local_size(), size);
  EXPECT_EQ(comm.local_rank(), rank);
  EXPECT_GT(comm.rendezvous_seconds(), 0.0);
  EXPECT_LT(comm.rendezvous_seconds(), 60.0);
  EXPECT_NE(comm.mpi_comm(), MPI_COMM_WORLD);
  int cmp = 0;
  MPI_Comm_compare(comm.mpi_comm(), MPI_COMM_WORLD, &cmp);
  EXPECT_EQ(cmp, MPI_CONGRUENT);  // a duplicate, not the caller's communicator
  EXPECT_EQ(comm.leaders_comm() != MPI_COMM_NULL, rank == 0);
}

TEST(Rendezvous, NodeSplitOverrideActsOutNodes) {
  gradwire::Options o;
  o.ranks_per_node = 2;
  Communicator comm(MPI_COMM_WORLD, o);
  const int size = comm.size(), rank = comm.rank();
  EXPECT_EQ(comm.node_count(), (size + 1) / 2);
  EXPECT_EQ(comm.node(), rank / 2);
  EXPECT_EQ(comm.local_rank(), rank % 2);
  EXPECT_EQ(comm.local_size(), std::min(2, size - 2 * (rank / 2)));
  if (comm.local_rank() == 0) {
    int leaders = 0;
    MPI_Comm_size(comm.leaders_comm(), &leaders);
    EXPECT_EQ(leaders, comm.node_count());
  } else {
    EXPECT_EQ(comm.leaders_comm(), MPI_COMM_NULL);
  }
}

TEST(Rendezvous, SplitMakesWorkingSubCommunicators) {
  Communicator comm(MPI_COMM_WORLD);
  const int color = comm.rank() % 2;
  Communicator sub = comm.split(color, -comm.rank());  // reversed order inside each group
  const int expected = (comm.size() + 1 - color) / 2;
  EXPECT_EQ(sub.size(), expected);
  EXPECT_EQ(sub.rank(), expected - 1 - comm.rank() / 2);
  std::int64_t v = comm.rank();
  sub.allreduce(&v, &v, 1, DType::Int64, ReduceOp::Sum);
  std::int64_t want = 0;
  for (int r = color; r < comm.size(); r += 2) want += r;
  EXPECT_EQ(v, want);
}

TEST(Rendezvous, CallersPendingMessageIsUntouched) {
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const int peer = (rank + 1) % size, from = (rank + size - 1) % size;
  int out = 1000 + rank, in = -1;
  MPI_Request reqs[2];
  MPI_Irecv(&in, 1, MPI_INT, from, 7, MPI_COMM_WORLD, &reqs[0]);
  MPI_Isend(&out, 1, MPI_INT, peer, 7, MPI_COMM_WORLD, &reqs[1]);
  { Communicator comm(MPI_COMM_WORLD); }
  MPI_Waitall(2, reqs, MPI_STATUSES_IGNORE);
  EXPECT_EQ(in, 1000 + from);
}

// The last rank arrives after the deadline: every rank fails with an error naming it.
TEST(Rendezvous, MissingRankIsNamed) {
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size < 2) GTEST_SKIP() << "needs a rank that can be missing";
  MPI_Comm scratch;  // a stray arrival message must not reach later tests' communicators
  MPI_Comm_dup(MPI_COMM_WORLD, &scratch);
  gradwire::Options o;
  o.init_timeout_s = 0.5;
  o.on_timeout = gradwire::Options::Policy::Return;
  if (rank == size - 1) std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  try {
    Communicator comm(scratch, o);
    ADD_FAILURE() << "rendezvous succeeded although rank " << size - 1 << " was late";
  } catch (const gradwire::Error& e) {
    EXPECT_EQ(e.code(), gradwire::ErrorCode::Timeout);
    if (rank == size - 1) {
      EXPECT_THAT(e.what(), HasSubstr("rank 0 did not answer"));
    } else {
      EXPECT_THAT(e.what(), HasSubstr("1 rank(s) did not arrive within 0.5"));
      EXPECT_THAT(e.what(), HasSubstr("ranks " + std::to_string(size - 1)));
    }
  }
  MPI_Barrier(MPI_COMM_WORLD);
  MPI_Comm_free(&scratch);
}

TEST(DeviceAssignment, TwoRanksOnOneGpuNamesBothAndHost) {
  EXPECT_EQ(gradwire::detail::shared_device_error({"0000:01:00.0", "0000:02:00.0"}, {4, 5}, "n1"), "");
  const std::string m = gradwire::detail::shared_device_error(
      {"0000:01:00.0", "0000:02:00.0", "0000:01:00.0"}, {4, 5, 6}, "node17");
  EXPECT_THAT(m, HasSubstr("ranks 4 and 6 on host node17 both use GPU 0000:01:00.0"));
}

}  // namespace
