// Dense collectives on device memory through NCCL. They compile in every NCCL build and skip,
// saying why, where a rank has no GPU or ranks share one. The first device call of each test
// makes the communicator's NCCL communicator (lazy device setup).
#include <gtest/gtest.h>

#include <gradwire/communicator.hpp>
#include <gradwire/config.hpp>

#if GRADWIRE_HAVE_NCCL
#include <cuda_runtime.h>

#include <vector>

#include "device_env.hpp"
#include "inputs.hpp"

using gradwire::DType;
using gradwire::ReduceOp;

namespace {

class Device : public testing::Test {
 protected:
  void SetUp() override {
    const std::string why = gwtest::device_skip_reason();
    if (!why.empty()) GTEST_SKIP() << why;
    gwtest::use_gradwire_gpu();  // upload() allocates before the first device call
  }
  template <class T>
  T* upload(const std::vector<T>& host) {
    void* p = nullptr;
    EXPECT_EQ(cudaMalloc(&p, host.size() * sizeof(T) + 1), cudaSuccess);
    // Pageable: it may return before the data lands. The collectives are ordered after the
    // default stream's work (docs/collectives.md, "Streams and ordering"), so they see it.
    cudaMemcpy(p, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice);
    owned.push_back(p);
    return static_cast<T*>(p);
  }
  template <class T>
  std::vector<T> download(const T* dev, std::size_t n) {
    std::vector<T> host(n);
    cudaMemcpy(host.data(), dev, n * sizeof(T), cudaMemcpyDeviceToHost);
    return host;
  }
  void TearDown() override {
    for (void* p : owned) cudaFree(p);
  }
  gradwire::Communicator comm{MPI_COMM_WORLD};
  std::vector<void*> owned;
};

TEST_F(Device, AllreduceSumAvgMaxFloat32) {
  const int P = comm.size(), r = comm.rank();
  const std::size_t n = 100003;
  for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Avg, ReduceOp::Max}) {
    std::vector<float> x(n);
    for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<float>(gwtest::value(DType::Float32, op, 7, r, i));
    float* d = upload(x);
    auto req = comm.iallreduce(d, d, n, DType::Float32, op);
    req.wait();
    const auto y = download(d, n);
    std::size_t bad = 0;
    for (std::size_t i = 0; i < n; ++i) {
      double want = op == ReduceOp::Max ? -1e300 : 0, mag = 0;
      for (int q = 0; q < P; ++q) {
        const double v = gwtest::value(DType::Float32, op, 7, q, i);
        want = op == ReduceOp::Max ? std::max(want, v) : want + v;
        mag += std::fabs(v);
      }
      if (op == ReduceOp::Avg) want /= P, mag /= P;
      bad += std::fabs(y[i] - want) > (P + 2) * 0x1.0p-24 * mag;
    }
    EXPECT_EQ(bad, 0u) << gradwire::op_name(op);
  }
}

TEST_F(Device, AllgatherReduceScatterBroadcast) {
  const int P = comm.size(), r = comm.rank();
  const std::size_t n = 4099;
  std::vector<std::int32_t> mine(n), all(n * P);
  for (std::size_t i = 0; i < n; ++i) mine[i] = r * 100000 + static_cast<std::int32_t>(i);
  std::int32_t* dsend = upload(mine);
  std::int32_t* drecv = upload(all);
  comm.allgather(dsend, drecv, n, DType::Int32);
  auto got = download(drecv, n * P);
  for (int q = 0; q < P; ++q)
    for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(got[q * n + i], q * 100000 + static_cast<std::int32_t>(i));

  comm.reduce_scatter(drecv, dsend, n / P, DType::Int32, ReduceOp::Sum);
  got = download(dsend, n / P);
  for (std::size_t i = 0; i < n / P; ++i) {
    // Every rank sends the same gathered buffer, so element g reduces to P times its value.
    const std::size_t g = r * (n / P) + i;
    const auto want = static_cast<std::int32_t>((g / n) * 100000 + g % n) * P;
    ASSERT_EQ(got[i], want) << "element " << i;
  }

  std::vector<std::int32_t> b(n, r);
  std::int32_t* db = upload(b);
  comm.broadcast(db, n, DType::Int32, P - 1);
  for (std::int32_t v : download(db, n)) ASSERT_EQ(v, P - 1);
}

TEST_F(Device, IntegerAverageIsRejectedOnDevice) {
  std::vector<std::int32_t> x(4, 1);
  std::int32_t* d = upload(x);
  EXPECT_THROW(comm.allreduce(d, d, 4, DType::Int32, ReduceOp::Avg), gradwire::Error);
}

}  // namespace

#else

TEST(Device, NotBuilt) { GTEST_SKIP() << "gradwire built without NCCL: device collectives not compiled"; }

#endif
