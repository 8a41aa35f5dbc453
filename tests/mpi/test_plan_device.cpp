// Device-memory plans (docs/compressed-collectives.md, "Device memory"): SRA, compressed
// allgather and reduce-scatter run on the GPU (CUDA executor) over NCCL where every rank has
// its own GPU, or over MPI with only the compressed messages staged where ranks share one;
// shared-grid stages the whole buffer and runs the host algorithm. Either way a device plan
// must give the same bits as a host plan with the same configuration and seed, and report
// its transport, executor and PCIe bytes. The GPU tests compile in every NCCL build (which
// links the CUDA runtime into this binary) and skip, saying why, where a rank sees no GPU;
// scripts/gpu_check.sh runs them at 1 rank (NCCL) and at 2 and 4 ranks on one GPU. The tests
// of the failure without CUDA or without a GPU run everywhere.
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
#include "device_env.hpp"
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
  EXPECT_EQ(plan.stats().executor, "host");
  EXPECT_EQ(plan.stats().pcie_bytes, 0u);
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
    // cudaMemset is asynchronous, on the legacy default stream, which the test's non-blocking
    // stream does not wait for.
    EXPECT_EQ(cudaStreamSynchronize(cudaStreamLegacy), cudaSuccess);
    owned.push_back(p);
    return static_cast<float*>(p);
  }

  // The transport a device plan on the GPU must report: NCCL where every rank has its own
  // GPU, else MPI (CUDA-aware where every rank's MPI says so, else staged messages).
  static bool transport_ok(const std::string& t, bool native) {
    if (!native) return t == "mpi+staged-pinned";
    if (!gwtest::ranks_share_a_gpu()) return t == "nccl";
    return t == "mpi+staged-compressed" || t == "mpi-cuda-aware";
  }

  // Runs the same configuration as a host plan and as a device plan for several steps (error
  // feedback and the step-keyed rounding carry over), and counts steps whose results differ
  // in any bit. Steps alternate run_on_stream on a stream, run_on_stream in place (allreduce)
  // and run(). Counted, not asserted: every rank reaches the EXPECTs. native: the algorithm
  // runs on the GPU (else the whole buffer is staged through the host).
  void check_bits(PlanCollective coll, const std::string& algorithm, const std::string& codec,
                  bool native) {
    const int P = comm.size(), r = comm.rank();
    const std::size_t n = 5003;
    const std::size_t in_n = coll == PlanCollective::ReduceScatter ? n * P : n;
    const std::size_t out_n = coll == PlanCollective::Allgather ? n * P : n;
    Plan host(comm, config(coll, algorithm, codec, n, Memory::Host));
    Plan dev(comm, config(coll, algorithm, codec, n, Memory::Device));
    EXPECT_TRUE(transport_ok(dev.stats().transport, native)) << dev.stats().transport;
    EXPECT_EQ(dev.stats().executor, native ? "cuda" : "host");
    EXPECT_EQ(host.stats().executor, "host");
    EXPECT_EQ(dev.stats().algorithm, host.stats().algorithm);
    float* d_in = device_floats(in_n);
    float* d_out = device_floats(out_n);
    std::size_t differing = 0, cuda_errors = 0;
    std::string first;
    for (int step = 0; step < 4; ++step) {
      std::vector<float> x(in_n), want(out_n), got(out_n);
      for (std::size_t i = 0; i < in_n; ++i)
        x[i] = static_cast<float>(gwtest::value(DType::Float32, ReduceOp::Sum, 100 + step, r, i));
      host.run(x.data(), want.data());
      cuda_errors += cudaMemcpy(d_in, x.data(), in_n * sizeof(float), cudaMemcpyHostToDevice) != cudaSuccess;
      // run_on_stream is ordered with `stream` only (non-blocking): the pageable upload, which
      // may return before its DMA ends, must have landed first. run() (the default stream) is
      // ordered after it by stream order.
      cuda_errors += cudaStreamSynchronize(cudaStreamLegacy) != cudaSuccess;
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
    const auto& ds = dev.stats();
    const auto& hs = host.stats();
    if (P > 1) {
      EXPECT_GT(ds.wire_bytes, 0u);
    }
    // The device allgather sends fixed-size messages without the size exchange (8 bytes per
    // peer); everything else puts the same payload on the wire.
    const std::size_t sizes = native && coll == PlanCollective::Allgather ? 8u * (P - 1) : 0u;
    EXPECT_EQ(ds.wire_bytes + sizes, hs.wire_bytes);
    EXPECT_EQ(hs.pcie_bytes, 0u);
    if (!native) {
      EXPECT_EQ(ds.pcie_bytes, (in_n + out_n) * sizeof(float));  // the whole buffer, down and up
    } else if (ds.transport == "mpi+staged-compressed") {
      // Only messages cross PCIe: what this rank sent plus what it received, well below the
      // whole buffer down and up of the staged-pinned path.
      EXPECT_GT(ds.pcie_bytes, 0u);
      EXPECT_LE(ds.pcie_bytes, 2 * ds.wire_bytes + 64u * P);
      EXPECT_LT(ds.pcie_bytes, (in_n + out_n) * sizeof(float));
    } else {
      EXPECT_EQ(ds.pcie_bytes, 0u);
    }
  }

  Communicator comm{MPI_COMM_WORLD};
  cudaStream_t stream = nullptr;
  std::vector<void*> owned;
};

}  // namespace

TEST_F(PlanDeviceGpu, SraQ8MatchesHostBits) {
  check_bits(PlanCollective::Allreduce, "sra", "q8", true);
}

TEST_F(PlanDeviceGpu, SraQ4AndFp16MatchHostBits) {
  check_bits(PlanCollective::Allreduce, "sra", "q4", true);
  check_bits(PlanCollective::Allreduce, "sra", "fp16", true);
}

TEST_F(PlanDeviceGpu, SharedGridQ8MatchesHostBits) {
  check_bits(PlanCollective::Allreduce, "shared-grid", "q8", false);
}

TEST_F(PlanDeviceGpu, CompressedAllgatherQ8MatchesHostBits) {
  check_bits(PlanCollective::Allgather, "auto", "q8", true);
}

TEST_F(PlanDeviceGpu, ReduceScatterQ4MatchesHostBits) {
  check_bits(PlanCollective::ReduceScatter, "auto", "q4", true);
}

TEST_F(PlanDeviceGpu, StartOnTheGpuStagedStartUnsupportedHostBuffersRefused) {
  Plan dev(comm, config(PlanCollective::Allreduce, "sra", "q8", 64, Memory::Device));
  Plan staged(comm, config(PlanCollective::Allreduce, "shared-grid", "q8", 64, Memory::Device));
  float* d = device_floats(64);
  gradwire::Request req = dev.start(d, d);  // on the GPU: a request, on the default stream
  req.wait();
  EXPECT_EQ(dev.step(), 1u);
  const Caught s = catch_error([&] { (void)staged.start(d, d); });
  EXPECT_EQ(s.code, ErrorCode::Unsupported) << s.message;
  std::vector<float> h(64, 1.0f);  // every rank passes host memory: every rank refuses
  const Caught b = catch_error([&] { dev.run_on_stream(h.data(), h.data(), stream); });
  EXPECT_EQ(b.code, ErrorCode::InvalidArgument) << b.message;
  EXPECT_NE(b.message.find("not device memory"), std::string::npos) << b.message;
  dev.run(d, d);  // neither refusal touched the plan
  EXPECT_EQ(dev.step(), 2u);
}

// A NaN in rank 0's device input: the flag raised on the GPU reaches every rank in the same
// call (one agreed error naming rank 0), and the plan is unusable afterwards, as after any
// failed run.
TEST_F(PlanDeviceGpu, NonFiniteOnOneRankFailsEveryRankInTheSameCall) {
  const std::size_t n = 4096;
  Plan dev(comm, config(PlanCollective::Allreduce, "sra", "q8", n, Memory::Device));
  float* d = device_floats(n);
  if (comm.rank() == 0) {
    const float nan = NAN;
    EXPECT_EQ(cudaMemcpy(d + 100, &nan, sizeof nan, cudaMemcpyHostToDevice), cudaSuccess);
  }
  const Caught c = catch_error([&] { dev.run(d, d); });
  EXPECT_EQ(c.code, ErrorCode::InvalidArgument) << c.message;
  EXPECT_NE(c.message.find("rank 0"), std::string::npos) << c.message;
  EXPECT_NE(c.message.find("non-finite"), std::string::npos) << c.message;
}

#endif  // GRADWIRE_HAVE_NCCL
