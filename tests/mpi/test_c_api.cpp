// The C ABI (gradwire/gradwire.h) on MPI_COMM_WORLD: every collective against a reference
// computed locally from the same input formula (no MPI involved), and the status codes and
// gw_last_error() messages of the failures a C caller can cause. Every rank runs every test.
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "gradwire/config.hpp"
#include "gradwire/gradwire.h"

namespace {

// Rank r's element i: a small integer (exact in every dtype, even summed over 8 ranks),
// different per rank and per index. Signed types get negatives, to pin Avg's truncation.
int input(int r, std::size_t i, bool is_signed) {
  const int v = static_cast<int>((static_cast<std::size_t>(r) * 7 + i * 3) % 11);
  return is_signed ? v - 5 : v + 1;
}

template <class T> gw_dtype_t dtype_of();
template <> gw_dtype_t dtype_of<float>() { return GW_FLOAT32; }
template <> gw_dtype_t dtype_of<double>() { return GW_FLOAT64; }
template <> gw_dtype_t dtype_of<std::int32_t>() { return GW_INT32; }
template <> gw_dtype_t dtype_of<std::int64_t>() { return GW_INT64; }
template <> gw_dtype_t dtype_of<std::uint8_t>() { return GW_UINT8; }

template <class T> constexpr bool is_signed_v = static_cast<T>(-1) < static_cast<T>(0);

template <class T>
std::vector<T> inputs(int r, std::size_t n, std::size_t first = 0) {
  std::vector<T> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<T>(input(r, first + i, is_signed_v<T>));
  return v;
}

// The reduction of input(0..size-1, i), as the header documents each op.
template <class T>
T reference(gw_op_t op, int size, std::size_t i) {
  auto x = [&](int r) { return static_cast<T>(input(r, i, is_signed_v<T>)); };
  T acc = x(0);
  for (int r = 1; r < size; ++r) {
    switch (op) {
      case GW_SUM: case GW_AVG: acc = static_cast<T>(acc + x(r)); break;
      case GW_MIN: acc = std::min(acc, x(r)); break;
      case GW_MAX: acc = std::max(acc, x(r)); break;
      case GW_PROD: acc = static_cast<T>(acc * x(r)); break;
      default: ADD_FAILURE() << "no reference for op " << op; break;
    }
  }
  // Integers truncate toward zero, which is what C++'s / does.
  return op == GW_AVG ? static_cast<T>(acc / static_cast<T>(size)) : acc;
}

// float16 / bfloat16 bits of a small positive integer (exact in both formats).
std::uint16_t half_bits(int v) {
  int e = 0;
  while ((v >> (e + 1)) != 0) ++e;
  return static_cast<std::uint16_t>(((e + 15) << 10) | ((v << (10 - e)) & 0x3ff));
}
std::uint16_t bf16_bits(int v) {
  const float f = static_cast<float>(v);
  std::uint32_t u = 0;
  std::memcpy(&u, &f, sizeof u);
  return static_cast<std::uint16_t>(u >> 16);
}

std::string last_error() { return gw_last_error(); }

class CApi : public ::testing::Test {
 protected:
  void SetUp() override {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    ASSERT_EQ(gw_comm_create(MPI_COMM_WORLD, &comm_), GW_SUCCESS) << gw_last_error();
    ASSERT_NE(comm_, nullptr);
  }
  void TearDown() override {
    EXPECT_EQ(gw_comm_destroy(&comm_), GW_SUCCESS) << gw_last_error();
    EXPECT_EQ(comm_, nullptr);
  }

  template <class T>
  void check_allreduce(gw_op_t op, std::size_t n) {
    SCOPED_TRACE(::testing::Message() << "dtype " << dtype_of<T>() << " op " << op);
    const std::vector<T> send = inputs<T>(rank_, n);
    std::vector<T> recv(n), in_place = send;
    ASSERT_EQ(gw_allreduce(comm_, send.data(), recv.data(), n, dtype_of<T>(), op),
              GW_SUCCESS) << gw_last_error();
    gw_request_t req = nullptr;
    ASSERT_EQ(gw_iallreduce(comm_, in_place.data(), in_place.data(), n, dtype_of<T>(), op,
                            &req), GW_SUCCESS) << gw_last_error();
    ASSERT_EQ(gw_request_wait(req), GW_SUCCESS) << gw_last_error();
    ASSERT_EQ(gw_request_free(&req), GW_SUCCESS) << gw_last_error();
    EXPECT_EQ(req, nullptr);
    for (std::size_t i = 0; i < n; ++i) {
      const T want = reference<T>(op, size_, i);
      if constexpr (std::is_floating_point_v<T>) {
        // Avg may multiply by 1/size instead of dividing; allow a few ulps there only.
        if (op == GW_AVG) {
          const T tol = 8 * std::numeric_limits<T>::epsilon() * std::max<T>(1, std::abs(want));
          ASSERT_NEAR(recv[i], want, tol) << "blocking, element " << i;
          ASSERT_NEAR(in_place[i], want, tol) << "non-blocking in place, element " << i;
          continue;
        }
      }
      ASSERT_EQ(recv[i], want) << "blocking, element " << i;
      ASSERT_EQ(in_place[i], want) << "non-blocking in place, element " << i;
    }
  }

  gw_comm_t comm_ = nullptr;
  int rank_ = 0, size_ = 1;
};

TEST_F(CApi, AllreduceMatchesReferenceForEachDtypeAndOp) {
  check_allreduce<float>(GW_SUM, 1000);
  check_allreduce<float>(GW_AVG, 333);
  check_allreduce<double>(GW_MIN, 257);
  check_allreduce<double>(GW_MAX, 257);
  check_allreduce<std::int32_t>(GW_SUM, 100);
  check_allreduce<std::int32_t>(GW_AVG, 100);
  check_allreduce<std::int32_t>(GW_PROD, 100);
  check_allreduce<std::int64_t>(GW_SUM, 64);
  check_allreduce<std::uint8_t>(GW_SUM, 77);
  check_allreduce<std::uint8_t>(GW_MAX, 77);
}

TEST_F(CApi, AllreduceOf16BitFloats) {
  const std::size_t n = 129;
  std::vector<std::uint16_t> h(n), b(n);
  for (std::size_t i = 0; i < n; ++i) {
    h[i] = half_bits(input(rank_, i, false));
    b[i] = bf16_bits(input(rank_, i, false));
  }
  ASSERT_EQ(gw_allreduce(comm_, h.data(), h.data(), n, GW_FLOAT16, GW_SUM), GW_SUCCESS)
      << gw_last_error();
  ASSERT_EQ(gw_allreduce(comm_, b.data(), b.data(), n, GW_BFLOAT16, GW_SUM), GW_SUCCESS)
      << gw_last_error();
  for (std::size_t i = 0; i < n; ++i) {
    int sum = 0;
    for (int r = 0; r < size_; ++r) sum += input(r, i, false);
    ASSERT_EQ(h[i], half_bits(sum)) << "float16 element " << i;
    ASSERT_EQ(b[i], bf16_bits(sum)) << "bfloat16 element " << i;
  }
}

TEST_F(CApi, AllgatherBlockingNonBlockingAndInPlace) {
  const std::size_t n = 37;
  const auto mine = inputs<float>(rank_, n);
  std::vector<float> a(n * size_), b(n * size_), c(n * size_);
  ASSERT_EQ(gw_allgather(comm_, mine.data(), a.data(), n, GW_FLOAT32), GW_SUCCESS)
      << gw_last_error();
  gw_request_t req = nullptr;
  ASSERT_EQ(gw_iallgather(comm_, mine.data(), b.data(), n, GW_FLOAT32, &req), GW_SUCCESS)
      << gw_last_error();
  // gw_request_test until done: exercises the polling path instead of wait.
  int done = 0;
  while (done == 0) ASSERT_EQ(gw_request_test(req, &done), GW_SUCCESS) << gw_last_error();
  ASSERT_EQ(gw_request_free(&req), GW_SUCCESS);
  std::copy(mine.begin(), mine.end(), c.begin() + static_cast<std::ptrdiff_t>(rank_ * n));
  ASSERT_EQ(gw_allgather(comm_, c.data() + rank_ * n, c.data(), n, GW_FLOAT32), GW_SUCCESS)
      << gw_last_error();
  for (int r = 0; r < size_; ++r) {
    for (std::size_t i = 0; i < n; ++i) {
      const auto want = static_cast<float>(input(r, i, true));
      ASSERT_EQ(a[r * n + i], want) << "rank " << r << " element " << i;
      ASSERT_EQ(b[r * n + i], want) << "rank " << r << " element " << i;
      ASSERT_EQ(c[r * n + i], want) << "rank " << r << " element " << i;
    }
  }
}

TEST_F(CApi, ReduceScatterGivesEachRankItsBlock) {
  const std::size_t n = 50;  // per rank
  // Block b of the send buffer is input(rank, b*n + i): rank r must get the sum over ranks
  // of block r.
  const auto send = inputs<std::int32_t>(rank_, n * size_);
  std::vector<std::int32_t> a(n), b(n);
  ASSERT_EQ(gw_reduce_scatter(comm_, send.data(), a.data(), n, GW_INT32, GW_SUM), GW_SUCCESS)
      << gw_last_error();
  gw_request_t req = nullptr;
  ASSERT_EQ(gw_ireduce_scatter(comm_, send.data(), b.data(), n, GW_INT32, GW_MAX, &req),
            GW_SUCCESS) << gw_last_error();
  ASSERT_EQ(gw_request_wait(req), GW_SUCCESS) << gw_last_error();
  ASSERT_EQ(gw_request_free(&req), GW_SUCCESS);
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t g = rank_ * n + i;
    std::int32_t sum = 0, max = input(0, g, true);
    for (int r = 0; r < size_; ++r) {
      sum += input(r, g, true);
      max = std::max(max, input(r, g, true));
    }
    ASSERT_EQ(a[i], sum) << "sum, element " << i;
    ASSERT_EQ(b[i], max) << "max, element " << i;
  }
}

TEST_F(CApi, BroadcastFromLastAndFirstRank) {
  const std::size_t n = 91;
  const int last = size_ - 1;
  auto a = rank_ == last ? inputs<std::int64_t>(last, n) : std::vector<std::int64_t>(n, -99);
  ASSERT_EQ(gw_broadcast(comm_, a.data(), n, GW_INT64, last), GW_SUCCESS) << gw_last_error();
  auto b = rank_ == 0 ? inputs<double>(0, n) : std::vector<double>(n, -99);
  gw_request_t req = nullptr;
  ASSERT_EQ(gw_ibroadcast(comm_, b.data(), n, GW_FLOAT64, 0, &req), GW_SUCCESS)
      << gw_last_error();
  ASSERT_EQ(gw_request_wait(req), GW_SUCCESS) << gw_last_error();
  ASSERT_EQ(gw_request_free(&req), GW_SUCCESS);
  EXPECT_EQ(a, inputs<std::int64_t>(last, n));
  EXPECT_EQ(b, inputs<double>(0, n));
}

TEST_F(CApi, CommunicatorQueriesMatchMpi) {
  int v = -1;
  ASSERT_EQ(gw_comm_rank(comm_, &v), GW_SUCCESS);
  EXPECT_EQ(v, rank_);
  ASSERT_EQ(gw_comm_size(comm_, &v), GW_SUCCESS);
  EXPECT_EQ(v, size_);
  int local_rank = -1, local_size = -1, nodes = -1;
  ASSERT_EQ(gw_comm_local_rank(comm_, &local_rank), GW_SUCCESS);
  ASSERT_EQ(gw_comm_local_size(comm_, &local_size), GW_SUCCESS);
  ASSERT_EQ(gw_comm_node_count(comm_, &nodes), GW_SUCCESS);
  EXPECT_GE(local_rank, 0);
  EXPECT_LT(local_rank, local_size);
  EXPECT_GE(nodes, 1);
  EXPECT_LE(nodes, size_);
  double seconds = -1;
  ASSERT_EQ(gw_comm_rendezvous_seconds(comm_, &seconds), GW_SUCCESS);
  EXPECT_GE(seconds, 0.0);
  EXPECT_EQ(gw_comm_set_on_timeout(comm_, GW_ON_TIMEOUT_RETURN), GW_SUCCESS);
  EXPECT_EQ(gw_comm_set_on_timeout(comm_, GW_ON_TIMEOUT_ABORT), GW_SUCCESS);
}

TEST_F(CApi, SplitByParityReducesWithinEachHalf) {
  gw_comm_t half = nullptr;
  // key = -rank reverses the order inside each half.
  ASSERT_EQ(gw_comm_split(comm_, rank_ % 2, -rank_, &half), GW_SUCCESS) << gw_last_error();
  std::vector<int> members;
  for (int r = size_ - 1; r >= 0; --r) {
    if (r % 2 == rank_ % 2) members.push_back(r);
  }
  int sub_rank = -1, sub_size = -1;
  ASSERT_EQ(gw_comm_rank(half, &sub_rank), GW_SUCCESS);
  ASSERT_EQ(gw_comm_size(half, &sub_size), GW_SUCCESS);
  EXPECT_EQ(sub_size, static_cast<int>(members.size()));
  ASSERT_GE(sub_rank, 0);
  ASSERT_LT(sub_rank, sub_size);
  EXPECT_EQ(members[sub_rank], rank_);
  std::int64_t x = rank_, sum = 0;
  ASSERT_EQ(gw_allreduce(half, &x, &sum, 1, GW_INT64, GW_SUM), GW_SUCCESS) << gw_last_error();
  std::int64_t want = 0;
  for (int r : members) want += r;
  EXPECT_EQ(sum, want);
  EXPECT_EQ(gw_comm_destroy(&half), GW_SUCCESS) << gw_last_error();
}

TEST(CApiCreate, FromFortranHandle) {
  gw_comm_t comm = nullptr;
  ASSERT_EQ(gw_comm_create_f(MPI_Comm_c2f(MPI_COMM_WORLD), &comm), GW_SUCCESS)
      << gw_last_error();
  int size = 0, mpi_size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &mpi_size);
  ASSERT_EQ(gw_comm_size(comm, &size), GW_SUCCESS);
  EXPECT_EQ(size, mpi_size);
  int one = 1, n = 0;
  ASSERT_EQ(gw_allreduce(comm, &one, &n, 1, GW_INT32, GW_SUM), GW_SUCCESS) << gw_last_error();
  EXPECT_EQ(n, mpi_size);
  EXPECT_EQ(gw_comm_destroy(&comm), GW_SUCCESS) << gw_last_error();
}

// ---- failures: local checks only, so no rank waits for another ----

TEST_F(CApi, NullBufferWithNonzeroCountNamesTheCallAndCount) {
  std::vector<float> recv(12345);
  EXPECT_EQ(gw_allreduce(comm_, nullptr, recv.data(), 12345, GW_FLOAT32, GW_SUM),
            GW_INVALID_ARGUMENT);
  const std::string m = last_error();
  EXPECT_EQ(m.rfind("gw_allreduce: ", 0), 0u) << m;
  EXPECT_NE(m.find("allreduce("), std::string::npos) << m;
  EXPECT_NE(m.find("12345"), std::string::npos) << m;

  gw_request_t req = reinterpret_cast<gw_request_t>(&recv);  // must be reset to NULL
  EXPECT_EQ(gw_iallgather(comm_, recv.data(), nullptr, 77, GW_FLOAT32, &req),
            GW_INVALID_ARGUMENT);
  EXPECT_EQ(req, nullptr);
  const std::string g = last_error();
  EXPECT_EQ(g.rfind("gw_iallgather: ", 0), 0u) << g;
  EXPECT_NE(g.find("77"), std::string::npos) << g;
  // count 0 with NULL buffers is a valid no-op (nothing to read or write).
  EXPECT_EQ(gw_allreduce(comm_, nullptr, nullptr, 0, GW_FLOAT32, GW_SUM), GW_SUCCESS)
      << gw_last_error();
}

TEST_F(CApi, InvalidDtypeAndOpAreInvalidArguments) {
  float x[4] = {1, 2, 3, 4}, y[4];
  EXPECT_EQ(gw_allreduce(comm_, x, y, 4, static_cast<gw_dtype_t>(99), GW_SUM),
            GW_INVALID_ARGUMENT);
  std::string m = last_error();
  EXPECT_EQ(m.rfind("gw_allreduce: ", 0), 0u) << m;
  EXPECT_NE(m.find("dtype"), std::string::npos) << m;
  EXPECT_EQ(gw_broadcast(comm_, x, 4, static_cast<gw_dtype_t>(1000), 0), GW_INVALID_ARGUMENT);
  m = last_error();
  EXPECT_EQ(m.rfind("gw_broadcast: ", 0), 0u) << m;
  EXPECT_NE(m.find("dtype"), std::string::npos) << m;
  EXPECT_EQ(gw_allreduce(comm_, x, y, 4, GW_FLOAT32, static_cast<gw_op_t>(42)),
            GW_INVALID_ARGUMENT);
  m = last_error();
  EXPECT_NE(m.find("op"), std::string::npos) << m;
  EXPECT_EQ(gw_broadcast(comm_, x, 4, GW_FLOAT32, size_), GW_INVALID_ARGUMENT)
      << "root == size";
  m = last_error();
  EXPECT_NE(m.find("root"), std::string::npos) << m;
}

TEST(CApiErrors, NullHandlesAndOutPointers) {
  float x = 1, y = 0;
  EXPECT_EQ(gw_allreduce(nullptr, &x, &y, 1, GW_FLOAT32, GW_SUM), GW_INVALID_ARGUMENT);
  EXPECT_STREQ(gw_last_error(), "gw_allreduce: communicator handle is NULL");
  gw_request_t req = nullptr;
  EXPECT_EQ(gw_ibroadcast(nullptr, &x, 1, GW_FLOAT32, 0, &req), GW_INVALID_ARGUMENT);
  EXPECT_STREQ(gw_last_error(), "gw_ibroadcast: communicator handle is NULL");
  EXPECT_EQ(gw_comm_rank(nullptr, nullptr), GW_INVALID_ARGUMENT);
  EXPECT_STREQ(gw_last_error(), "gw_comm_rank: communicator handle is NULL");
  EXPECT_EQ(gw_comm_create(MPI_COMM_WORLD, nullptr), GW_INVALID_ARGUMENT);
  EXPECT_STREQ(gw_last_error(), "gw_comm_create: communicator out-pointer is NULL");
  EXPECT_EQ(gw_request_wait(nullptr), GW_INVALID_ARGUMENT);
  EXPECT_STREQ(gw_last_error(), "gw_request_wait: request handle is NULL");
  EXPECT_EQ(gw_request_test(nullptr, nullptr), GW_INVALID_ARGUMENT);
  EXPECT_EQ(gw_request_free(nullptr), GW_INVALID_ARGUMENT);
  EXPECT_EQ(gw_comm_set_on_timeout(nullptr, GW_ON_TIMEOUT_RETURN), GW_INVALID_ARGUMENT);
  EXPECT_EQ(gw_comm_destroy(nullptr), GW_INVALID_ARGUMENT);
  EXPECT_STREQ(gw_last_error(), "gw_comm_destroy: communicator pointer is NULL");
  // Freeing NULL handles through valid pointers is a no-op, as with free().
  gw_comm_t none = nullptr;
  EXPECT_EQ(gw_comm_destroy(&none), GW_SUCCESS);
  EXPECT_EQ(gw_request_free(&req), GW_SUCCESS);
  // A success leaves the last message alone (like errno).
  EXPECT_STREQ(gw_last_error(), "gw_comm_destroy: communicator pointer is NULL");
}

TEST_F(CApi, NullOutPointersOfLiveCommunicator) {
  EXPECT_EQ(gw_comm_size(comm_, nullptr), GW_INVALID_ARGUMENT);
  EXPECT_STREQ(gw_last_error(), "gw_comm_size: out-pointer is NULL");
  EXPECT_EQ(gw_comm_rendezvous_seconds(comm_, nullptr), GW_INVALID_ARGUMENT);
  float x = 1;
  // No request out-pointer: rejected before anything starts, so no rank waits.
  EXPECT_EQ(gw_iallreduce(comm_, &x, &x, 1, GW_FLOAT32, GW_SUM, nullptr), GW_INVALID_ARGUMENT);
  EXPECT_STREQ(gw_last_error(), "gw_iallreduce: request out-pointer is NULL");
  EXPECT_EQ(gw_comm_set_on_timeout(comm_, static_cast<gw_on_timeout_t>(7)),
            GW_INVALID_ARGUMENT);
  EXPECT_NE(std::string(gw_last_error()).find("policy"), std::string::npos);
  EXPECT_EQ(gw_comm_split(comm_, 0, 0, nullptr), GW_INVALID_ARGUMENT);
}

TEST(CApiErrors, LastErrorIsPerThread) {
  EXPECT_EQ(gw_comm_rank(nullptr, nullptr), GW_INVALID_ARGUMENT);
  std::string other;
  std::thread t([&] {
    other = gw_last_error();  // nothing failed on this thread yet
    gw_request_wait(nullptr);
  });
  t.join();
  EXPECT_EQ(other, "");
  EXPECT_STREQ(gw_last_error(), "gw_comm_rank: communicator handle is NULL");
}

TEST(CApiErrors, StatusStrings) {
  EXPECT_STREQ(gw_status_string(GW_SUCCESS), "success");
  EXPECT_STREQ(gw_status_string(GW_FINALIZED), "finalized");
  EXPECT_STREQ(gw_status_string(GW_OUT_OF_MEMORY), "out of memory");
  EXPECT_STREQ(gw_status_string(static_cast<gw_status_t>(1000)), "unknown status");
  for (int s = GW_INVALID_ARGUMENT; s <= GW_INTERNAL; ++s) {
    EXPECT_STRNE(gw_status_string(static_cast<gw_status_t>(s)), "unknown status") << s;
  }
}

TEST(CApiVersion, MatchesConfigHeader) {
  int major = -1, minor = -1, patch = -1;
  ASSERT_EQ(gw_version(&major, &minor, &patch), GW_SUCCESS);
  EXPECT_EQ(major, GRADWIRE_VERSION_MAJOR);
  EXPECT_EQ(minor, GRADWIRE_VERSION_MINOR);
  EXPECT_EQ(patch, GRADWIRE_VERSION_PATCH);
  EXPECT_STREQ(gw_version_string(), GRADWIRE_VERSION_STRING);
  EXPECT_EQ(gw_version(&major, nullptr, &patch), GW_INVALID_ARGUMENT);
  EXPECT_STREQ(gw_last_error(), "gw_version: minor is NULL");
}

TEST(CApiFinalize, UseAfterFinalizeIsFinalized) {
  gw_comm_t comm = nullptr;
  ASSERT_EQ(gw_comm_create(MPI_COMM_WORLD, &comm), GW_SUCCESS) << gw_last_error();
  ASSERT_EQ(gw_comm_finalize(comm), GW_SUCCESS) << gw_last_error();
  float x = 1, y = 0;
  EXPECT_EQ(gw_allreduce(comm, &x, &y, 1, GW_FLOAT32, GW_SUM), GW_FINALIZED);
  const std::string m = last_error();
  EXPECT_EQ(m.rfind("gw_allreduce: ", 0), 0u) << m;
  EXPECT_NE(m.find("allreduce("), std::string::npos) << m;
  gw_request_t req = nullptr;
  EXPECT_EQ(gw_iallgather(comm, &x, &y, 1, GW_FLOAT32, &req), GW_FINALIZED);
  EXPECT_EQ(req, nullptr);
  gw_comm_t sub = nullptr;
  EXPECT_EQ(gw_comm_split(comm, 0, 0, &sub), GW_FINALIZED);
  EXPECT_EQ(sub, nullptr);
  EXPECT_EQ(gw_comm_finalize(comm), GW_FINALIZED) << "finalize twice";
  // The handle outlives finalize; destroying it does not finalize again.
  EXPECT_EQ(gw_comm_destroy(&comm), GW_SUCCESS) << gw_last_error();
  EXPECT_EQ(comm, nullptr);
}

}  // namespace
