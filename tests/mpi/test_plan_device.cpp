// Device-memory plans (docs/compressed-collectives.md, "Device memory"): device buffers are
// staged through the plan's pinned host buffers and reduced by the host algorithm, so a device
// plan must give the same bits as a host plan with the same configuration and seed, and report
// the staging in stats().transport. The GPU tests compile in every NCCL build (which links the
// CUDA runtime into this binary) and skip, saying why, where a rank sees no GPU. The tests of
// the failure without CUDA or without a GPU run everywhere.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstring>
#include <string>
#include <vector>

#include <gradwire/communicator.hpp>
#include <gradwire/config.hpp>
#include <gradwire/error.hpp>
#include <gradwire/plan.hpp>

#include "device_backend.hpp"  // gradwire::detail::cuda_device_present
#include "caught.hpp"
#include "inputs.hpp"

#if GRADWIRE_HAVE_NCCL
#include <cuda_runtime.h>
#endif

using gradwire::Communicator;
using gradwire::DType;
using gradwire::ErrorCode;
using gradwire::Memory;
using gradwire::Plan;
using gradwire::PlanCollective;
using gradwire::PlanConfig;
using gradwire::ReduceOp;

namespace {

bool gpu_on_every_rank() {
  int have = gradwire::detail::cuda_device_present() ? 1 : 0;
  MPI_Allreduce(MPI_IN_PLACE, &have, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  return have == 1;
}

using gwtest::Caught;
using gwtest::catch_error;

PlanConfig config(PlanCollective coll, const std::string& algorithm, const std::string& codec,
                  std::size_t n, Memory memory) {
  PlanConfig cfg;
  cfg.collective = coll;
  cfg.count = n;
  cfg.codec = codec;
  cfg.algorithm = algorithm;
  cfg.op = ReduceOp::Avg;
  cfg.seed = 11;
  cfg.memory = memory;
  return cfg;
}

}  // namespace

// Runs everywhere: host plans say so, and run_on_stream refuses them.
TEST(PlanDevice, HostPlanReportsMpiAndRefusesStreams) {
  Communicator comm(MPI_COMM_WORLD);
  Plan plan(comm, config(PlanCollective::Allreduce, "sra", "q8", 64, Memory::Host));
  EXPECT_EQ(plan.stats().transport, "mpi");
  EXPECT_EQ(plan.stats().cuda_aware_mpi, -1);
  std::vector<float> x(64, 1.0f);
  const Caught c = catch_error([&] { plan.run_on_stream(x.data(), x.data(), nullptr); });
  EXPECT_TRUE(c.thrown);
  EXPECT_EQ(c.code, ErrorCode::InvalidArgument);
  EXPECT_NE(c.message.find("Memory::Device"), std::string::npos) << c.message;
  plan.run(x.data(), x.data());  // still usable: the refusal touched nothing
  EXPECT_EQ(plan.step(), 1u);
}

// Runs where a rank has no GPU, or gradwire has no CUDA: every rank fails at construction
// with Unsupported and a message that says why (no rank is left in a collective).
TEST(PlanDevice, WithoutCudaOrGpuFailsClearlyOnEveryRank) {
  if (GRADWIRE_HAVE_CUDA && gpu_on_every_rank())
    GTEST_SKIP() << "every rank has a GPU: the no-GPU failure cannot happen here";
  Communicator comm(MPI_COMM_WORLD);
  const Caught c = catch_error([&] {
    Plan plan(comm, config(PlanCollective::Allreduce, "sra", "q8", 64, Memory::Device));
  });
  EXPECT_TRUE(c.thrown);
  EXPECT_EQ(c.code, ErrorCode::Unsupported);
#if GRADWIRE_HAVE_CUDA
  const bool says_why = c.message.find("no CUDA device is visible") != std::string::npos ||
                        c.message.find("another rank cannot run it") != std::string::npos;
#else
  const bool says_why = c.message.find("built without CUDA") != std::string::npos;
#endif
  EXPECT_TRUE(says_why) << c.message;
  // The communicator is still in step: a host plan works after the failure.
  std::vector<float> x(8, 1.0f);
  Plan host(comm, config(PlanCollective::Allreduce, "sra", "q8", 8, Memory::Host));
  host.run(x.data(), x.data());
  EXPECT_EQ(host.step(), 1u);
}

#if GRADWIRE_HAVE_NCCL

namespace {

class PlanDeviceGpu : public testing::Test {
 protected:
  void SetUp() override {
    if (!gpu_on_every_rank()) GTEST_SKIP() << "no GPU visible to every rank: device plans not run";
    // EXPECT, not ASSERT: a rank that left here would hang its peers (null: default stream).
    EXPECT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  }
  void TearDown() override {
    for (void* p : owned) cudaFree(p);
    if (stream) cudaStreamDestroy(stream);
  }
  float* device_floats(std::size_t n) {
    void* p = nullptr;
    EXPECT_EQ(cudaMalloc(&p, n * sizeof(float) + 1), cudaSuccess);
    EXPECT_EQ(cudaMemset(p, 0, n * sizeof(float)), cudaSuccess);  // finite: codecs reject NaN
    owned.push_back(p);
    return static_cast<float*>(p);
  }

  // Runs the same configuration as a host plan and as a device plan for several steps (error
  // feedback and the step-keyed rounding carry over), and counts steps whose results differ
  // in any bit. Steps alternate run_on_stream on a stream, run_on_stream in place (allreduce)
  // and run(). Counted, not asserted: every rank reaches the EXPECTs.
  void check_bits(PlanCollective coll, const std::string& algorithm, const std::string& codec) {
    const int P = comm.size(), r = comm.rank();
    const std::size_t n = 5003;
    const std::size_t out_n = coll == PlanCollective::Allgather ? n * P : n;
    Plan host(comm, config(coll, algorithm, codec, n, Memory::Host));
    Plan dev(comm, config(coll, algorithm, codec, n, Memory::Device));
    EXPECT_EQ(dev.stats().transport, "mpi+staged-pinned");
    EXPECT_EQ(dev.stats().algorithm, host.stats().algorithm);
    float* d_in = device_floats(n);
    float* d_out = device_floats(out_n);
    std::size_t differing = 0, cuda_errors = 0;
    std::string first;
    for (int step = 0; step < 4; ++step) {
      std::vector<float> x(n), want(out_n), got(out_n);
      for (std::size_t i = 0; i < n; ++i)
        x[i] = static_cast<float>(gwtest::value(DType::Float32, ReduceOp::Sum, 100 + step, r, i));
      host.run(x.data(), want.data());
      cuda_errors += cudaMemcpy(d_in, x.data(), n * sizeof(float), cudaMemcpyHostToDevice) != cudaSuccess;
      const bool in_place = coll == PlanCollective::Allreduce && step == 1;
      float* out = in_place ? d_in : d_out;
      if (step == 3) {
        dev.run(d_in, out);
      } else {
        dev.run_on_stream(d_in, out, stream);
        cuda_errors += cudaStreamSynchronize(stream) != cudaSuccess;
      }
      cuda_errors += cudaMemcpy(got.data(), out, out_n * sizeof(float), cudaMemcpyDeviceToHost) != cudaSuccess;
      if (std::memcmp(got.data(), want.data(), out_n * sizeof(float)) != 0 && differing++ == 0)
        first = "step " + std::to_string(step) + (in_place ? " (in place)" : "");
    }
    EXPECT_EQ(cuda_errors, 0u);
    EXPECT_EQ(differing, 0u) << algorithm << " " << codec << ": device result differs from host, first at " << first;
    EXPECT_EQ(dev.step(), host.step());
    EXPECT_GT(dev.stats().wire_bytes, 0u);
    EXPECT_EQ(dev.stats().wire_bytes, host.stats().wire_bytes);
  }

  Communicator comm{MPI_COMM_WORLD};
  cudaStream_t stream = nullptr;
  std::vector<void*> owned;
};

}  // namespace

TEST_F(PlanDeviceGpu, SraQ8MatchesHostBits) {
  check_bits(PlanCollective::Allreduce, "sra", "q8");
}

TEST_F(PlanDeviceGpu, SharedGridQ8MatchesHostBits) {
  check_bits(PlanCollective::Allreduce, "shared-grid", "q8");
}

TEST_F(PlanDeviceGpu, CompressedAllgatherQ8MatchesHostBits) {
  check_bits(PlanCollective::Allgather, "auto", "q8");
}

TEST_F(PlanDeviceGpu, StartIsUnsupportedAndHostBuffersAreRefused) {
  Plan dev(comm, config(PlanCollective::Allreduce, "sra", "q8", 64, Memory::Device));
  float* d = device_floats(64);
  const Caught s = catch_error([&] { (void)dev.start(d, d); });
  EXPECT_EQ(s.code, ErrorCode::Unsupported) << s.message;
  std::vector<float> h(64, 1.0f);  // every rank passes host memory: every rank refuses
  const Caught b = catch_error([&] { dev.run_on_stream(h.data(), h.data(), stream); });
  EXPECT_EQ(b.code, ErrorCode::InvalidArgument) << b.message;
  EXPECT_NE(b.message.find("not device memory"), std::string::npos) << b.message;
  dev.run(d, d);  // neither refusal touched the plan
  EXPECT_EQ(dev.step(), 1u);
}

#endif  // GRADWIRE_HAVE_NCCL
