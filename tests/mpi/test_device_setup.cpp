// The device setup (docs/architecture.md, "Device setup"): the NCCL communicator is made at the
// first device-memory call, agreed by every rank, never for host work; any number of
// communicators (and split sub-communicators) make and free theirs in one process. The tests
// that need no GPU run everywhere; the GPU ones compile in every NCCL build and skip, saying
// why, where a rank has no GPU or ranks share one.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdint>
#include <string>
#include <vector>

#include <gradwire/communicator.hpp>
#include <gradwire/config.hpp>
#include <gradwire/error.hpp>
#include <gradwire/plan.hpp>

#include "caught.hpp"
#include "device_env.hpp"
#include "device_setup.hpp"  // gradwire::detail::device_setups_started

using gradwire::Communicator;
using gradwire::DType;
using gradwire::ErrorCode;
using gradwire::Memory;
using gradwire::Options;
using gradwire::ReduceOp;

namespace {

using gwtest::Caught;
using gwtest::catch_error;

// The part of a message after `marker` (the part every rank must share), or "" without it.
std::string from(const std::string& message, const std::string& marker) {
  const auto at = message.find(marker);
  return at == std::string::npos ? "" : message.substr(at);
}

bool same_on_every_rank(const std::string& s) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : s) h = (h ^ ch) * 1099511628211ull;
  std::uint64_t lo = h, hi = h;
  MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
  MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
  return lo == hi;
}

void host_allreduce_works(Communicator& comm) {
  std::vector<float> x(257, 1.0f);
  comm.allreduce(x.data(), x.data(), x.size(), DType::Float32, ReduceOp::Sum);  // Memory::Auto
  EXPECT_EQ(x[0], static_cast<float>(comm.size()));
  EXPECT_EQ(x[256], static_cast<float>(comm.size()));
}

}  // namespace

// Host collectives, host plans and splits never start a device setup, whatever the GPUs.
TEST(DeviceSetup, HostWorkNeverSetsUpTheDevice) {
  const std::uint64_t before = gradwire::detail::device_setups_started();
  Communicator comm(MPI_COMM_WORLD);
  const int P = comm.size(), r = comm.rank();
  host_allreduce_works(comm);
  std::vector<std::int32_t> mine(5, r), all(5 * static_cast<std::size_t>(P));
  comm.iallgather(mine.data(), all.data(), 5, DType::Int32).wait();
  for (int q = 0; q < P; ++q) EXPECT_EQ(all[5 * static_cast<std::size_t>(q)], q);
  comm.reduce_scatter(all.data(), mine.data(), 5, DType::Int32, ReduceOp::Sum, Memory::Host);
  EXPECT_EQ(mine[0], P * r);
  comm.broadcast(mine.data(), 5, DType::Int32, P - 1);
  EXPECT_EQ(mine[0], P * (P - 1));

  gradwire::PlanConfig cfg;
  cfg.count = 64;
  cfg.codec = "q8";
  cfg.algorithm = "sra";
  gradwire::Plan plan(comm, cfg);
  std::vector<float> g(64, 0.5f);
  plan.run(g.data(), g.data());

  Communicator sub = comm.split(r % 2, r);
  host_allreduce_works(sub);

  EXPECT_FALSE(comm.has_device());
  EXPECT_EQ(comm.device(), -1);
  EXPECT_FALSE(sub.has_device());
  EXPECT_EQ(gradwire::detail::device_setups_started(), before);
}

// Where the device cannot be set up (a build without NCCL, a rank without a GPU): host work is
// untouched, an Eager constructor fails, and a device-memory call fails on every rank with the
// same error; later device calls repeat it at once, without a second setup.
TEST(DeviceSetup, UnavailableDeviceIsOneAgreedErrorAndHostWorkGoesOn) {
  if (GRADWIRE_HAVE_NCCL && gwtest::gpu_on_every_rank())
    GTEST_SKIP() << "every rank sees a GPU: the GPU tests (DeviceSetupGpu, DeviceSetupShared) "
                    "cover this";
  Options eager;
  eager.device_setup = Options::DeviceSetup::Eager;
  const Caught at_construction = catch_error([&] { Communicator c(MPI_COMM_WORLD, eager); });
  EXPECT_TRUE(at_construction.thrown);
  EXPECT_EQ(at_construction.code, ErrorCode::Unsupported) << at_construction.message;

  Communicator comm(MPI_COMM_WORLD);  // lazy: nothing to fail yet
  host_allreduce_works(comm);
  const std::uint64_t before = gradwire::detail::device_setups_started();
  std::vector<float> x(8, 1.0f);
  const Caught first = catch_error([&] {
    comm.allreduce(x.data(), x.data(), 8, DType::Float32, ReduceOp::Sum, Memory::Device);
  });
  EXPECT_TRUE(first.thrown);
  EXPECT_EQ(first.code, ErrorCode::Unsupported) << first.message;
  const std::string cause = from(first.message, "device setup failed: not possible on ");
  EXPECT_FALSE(cause.empty()) << first.message;
#if GRADWIRE_HAVE_NCCL
  EXPECT_NE(cause.find("no CUDA device is visible"), std::string::npos) << first.message;
#else
  EXPECT_NE(cause.find("built without NCCL"), std::string::npos) << first.message;
#endif
  EXPECT_TRUE(same_on_every_rank(cause)) << first.message;
  EXPECT_EQ(gradwire::detail::device_setups_started(), before + 1);

  // The failure is kept: no second setup (which would need every rank again).
  const Caught again = catch_error([&] { comm.setup_device(); });
  EXPECT_TRUE(again.thrown);
  EXPECT_EQ(again.code, ErrorCode::Unsupported);
  EXPECT_FALSE(from(again.message, cause).empty()) << again.message;
  EXPECT_EQ(gradwire::detail::device_setups_started(), before + 1);
  EXPECT_FALSE(comm.has_device());
  EXPECT_EQ(comm.device(), -1);
  host_allreduce_works(comm);  // still in step
}

#if GRADWIRE_HAVE_NCCL

namespace {

class DeviceSetupGpu : public testing::Test {
 protected:
  void SetUp() override {
    const std::string why = gwtest::device_skip_reason();
    if (!why.empty()) GTEST_SKIP() << why;
    gwtest::use_gradwire_gpu();
    EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&buf), n * sizeof(float)), cudaSuccess);
  }
  void TearDown() override {
    if (buf) cudaFree(buf);
  }
  // A device allreduce on `comm` of (its rank + offset) everywhere; true when every element
  // holds the exact sum.
  bool device_sum_is_exact(Communicator& comm, int offset) {
    std::vector<float> host(n, static_cast<float>(comm.rank() + offset));
    cudaMemcpy(buf, host.data(), n * sizeof(float), cudaMemcpyHostToDevice);
    comm.allreduce(buf, buf, n, DType::Float32, ReduceOp::Sum);
    cudaMemcpy(host.data(), buf, n * sizeof(float), cudaMemcpyDeviceToHost);
    const int P = comm.size();
    const float want = static_cast<float>(P * (P - 1) / 2 + P * offset);
    for (float v : host)
      if (v != want) return false;
    return true;
  }
  static constexpr std::size_t n = 4096;
  float* buf = nullptr;
};

}  // namespace

// Every communicator after the first used to fail (NCCL finalize not awaited before destroy):
// 100 of them in a row, each with its own device call, then freed.
TEST_F(DeviceSetupGpu, HundredCommunicatorsWithADeviceCallEach) {
  for (int i = 0; i < 100; ++i) {
    Communicator comm(MPI_COMM_WORLD);
    EXPECT_FALSE(comm.has_device());
    const Caught e =
        catch_error([&] { EXPECT_TRUE(device_sum_is_exact(comm, i)) << "communicator " << i; });
    ASSERT_FALSE(e.thrown) << "communicator " << i << ": " << e.message;
    ASSERT_TRUE(comm.has_device()) << "communicator " << i;
    if (i % 10 == 9) comm.finalize();  // the explicit path frees the same way
  }
}

// split() of a communicator with a device gives sub-communicators whose NCCL communicator is
// split from the parent's (at once, same GPU, MPI's rank order); a parent without one gives
// children that make their own at their first device call.
TEST_F(DeviceSetupGpu, SplitSubCommunicatorsUseTheDevice) {
  Communicator world(MPI_COMM_WORLD);
  world.setup_device();
  ASSERT_TRUE(world.has_device());
  const int P = world.size(), r = world.rank();
  for (int i = 0; i < 10; ++i) {
    Communicator half = world.split(r % 2, P - r);  // reversed order: NCCL must follow MPI's
    EXPECT_TRUE(half.has_device());
    EXPECT_EQ(half.device(), world.device());
    EXPECT_TRUE(device_sum_is_exact(half, i));
    std::vector<float> v(n, static_cast<float>(r));
    cudaMemcpy(buf, v.data(), n * sizeof(float), cudaMemcpyHostToDevice);
    half.broadcast(buf, n, DType::Float32, 0);
    cudaMemcpy(v.data(), buf, n * sizeof(float), cudaMemcpyDeviceToHost);
    int top = -1;  // half's rank 0 is the highest world rank of this color
    for (int q = 0; q < P; ++q)
      if (q % 2 == r % 2) top = q;
    EXPECT_EQ(v[0], static_cast<float>(top));
    Communicator nested = half.split(0, half.rank());
    EXPECT_TRUE(nested.has_device());
    EXPECT_TRUE(device_sum_is_exact(nested, i));
  }
  Communicator fresh(MPI_COMM_WORLD);
  Communicator lazy = fresh.split(r % 2, r);
  EXPECT_FALSE(lazy.has_device());
  EXPECT_TRUE(device_sum_is_exact(lazy, 3));
  EXPECT_TRUE(lazy.has_device());
  EXPECT_FALSE(fresh.has_device());
  EXPECT_TRUE(device_sum_is_exact(world, 1));  // the parent still works after its splits
}

// More ranks than GPUs on a host (np 2 on one GPU): host work runs, and a device call fails on
// every rank with the same error naming both ranks, the host and the GPU.
TEST(DeviceSetupShared, SharedGpuIsAClearErrorForDeviceCallsOnly) {
  if (!gwtest::gpu_on_every_rank()) GTEST_SKIP() << "no GPU visible to every rank";
  if (!gwtest::ranks_share_a_gpu())
    GTEST_SKIP() << "every rank has a GPU of its own (run at np 2 on one GPU to see this error)";
  Communicator comm(MPI_COMM_WORLD);
  host_allreduce_works(comm);
  gwtest::use_gradwire_gpu();
  float* d = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d), 64 * sizeof(float)), cudaSuccess);
  const Caught e = catch_error([&] { comm.allreduce(d, d, 64, DType::Float32, ReduceOp::Sum); });
  cudaFree(d);
  EXPECT_TRUE(e.thrown);
  EXPECT_EQ(e.code, ErrorCode::InvalidArgument) << e.message;
  const std::string cause = from(e.message, "device setup failed: ");
  EXPECT_NE(cause.find(" both use GPU "), std::string::npos) << e.message;
  EXPECT_NE(cause.find("one rank per GPU"), std::string::npos) << e.message;
  EXPECT_TRUE(same_on_every_rank(cause)) << e.message;
  EXPECT_FALSE(comm.has_device());
  Options eager;
  eager.device_setup = Options::DeviceSetup::Eager;
  const Caught at_construction = catch_error([&] { Communicator c(MPI_COMM_WORLD, eager); });
  EXPECT_EQ(at_construction.code, ErrorCode::InvalidArgument) << at_construction.message;
  host_allreduce_works(comm);
}

#else

TEST(DeviceSetupGpu, NotBuilt) {
  GTEST_SKIP() << "gradwire built without NCCL: device setup tests not compiled";
}

#endif
