// PowerSGD on the GPU (collectives/algorithms/powersgd_device.hpp; docs/compressed-collectives.md,
// "PowerSGD on the device"): a device-memory powersgd plan keeps its matrices, residual and
// factors on the GPU (cuBLAS products, cuSOLVER QR) and must give the host plan's result
// within float rounding, the same bytes on the wire, the same bits on every rank, and the same
// error-feedback bookkeeping. Compiled in every build; skipped, saying why, where gradwire has
// no CUDA or a rank sees no GPU. Ranks may share one GPU (no NCCL is involved).
#include <gtest/gtest.h>
#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include <gradwire/communicator.hpp>
#include <gradwire/config.hpp>
#include <gradwire/error.hpp>
#include <gradwire/plan.hpp>

#include "caught.hpp"
#include "collectives/algorithms/powersgd.hpp"
#include "device_env.hpp"
#include "plan_inputs.hpp"

#if GRADWIRE_HAVE_CUDA
#include <cuda_runtime.h>

#include "collectives/algorithms/powersgd_device.hpp"
#endif

using gradwire::Communicator;
using gradwire::ErrorCode;
using gradwire::MatrixShape;
using gradwire::Memory;
using gradwire::Plan;
using gradwire::PlanConfig;
using gradwire::ReduceOp;
using gwtest::Caught;
using gwtest::catch_error;
using gwplan::identical_everywhere;
using gwplan::rank2_gradient;
using gwplan::signed_unit;

namespace {

const std::vector<MatrixShape>& kShapes = gwplan::kPowerSgdShapes;
constexpr std::size_t kCount = gwplan::kPowerSgdCount;

PlanConfig psgd_config(std::uint32_t rank, bool ef, Memory memory) {
  PlanConfig cfg;
  cfg.count = kCount;
  cfg.algorithm = "powersgd";
  cfg.op = ReduceOp::Avg;
  cfg.powersgd_rank = rank;
  cfg.shapes = kShapes;
  cfg.error_feedback = ef;
  cfg.seed = 11;
  cfg.memory = memory;
  return cfg;
}

double max_abs(const std::vector<float>& v) {
  double m = 0;
  for (float x : v) m = std::max(m, static_cast<double>(std::fabs(x)));
  return m;
}
double max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    m = std::max(m, std::fabs(static_cast<double>(a[i]) - b[i]));
  return m;
}

// Device buffers of floats, freed by the fixture. Without CUDA nothing here is reached (the
// fixture skips first); the stubs only keep the file compiling.
class PowerSgdDeviceGpu : public testing::Test {
 protected:
  void SetUp() override {
    if (!GRADWIRE_HAVE_CUDA) GTEST_SKIP() << "gradwire built without CUDA: device powersgd not compiled";
    if (!gwtest::gpu_on_every_rank()) GTEST_SKIP() << "no GPU visible to every rank: device powersgd not run";
    gwtest::use_gradwire_gpu();
  }
  void TearDown() override {
#if GRADWIRE_HAVE_CUDA
    for (float* p : owned) cudaFree(p);
#endif
  }
  float* device_floats(std::size_t n) {
    float* p = nullptr;
#if GRADWIRE_HAVE_CUDA
    void* v = nullptr;
    EXPECT_EQ(cudaMalloc(&v, n * sizeof(float)), cudaSuccess);
    p = static_cast<float*>(v);
    owned.push_back(p);
#else
    (void)n;
#endif
    return p;
  }
  // Counted, not asserted: every rank must reach the collective calls that follow.
  void put(float* d, const std::vector<float>& h) {
#if GRADWIRE_HAVE_CUDA
    cuda_errors += cudaMemcpy(d, h.data(), h.size() * sizeof(float), cudaMemcpyHostToDevice) != cudaSuccess;
    // Landed before run_on_stream's non-blocking stream reads it (a pageable copy may return
    // before its DMA ends; such a stream does not wait for the legacy default stream).
    cuda_errors += cudaStreamSynchronize(cudaStreamLegacy) != cudaSuccess;
#else
    (void)d, (void)h;
#endif
  }
  std::vector<float> get(const float* d, std::size_t n) {
    std::vector<float> h(n);
#if GRADWIRE_HAVE_CUDA
    cuda_errors += cudaMemcpy(h.data(), d, n * sizeof(float), cudaMemcpyDeviceToHost) != cudaSuccess;
#else
    (void)d;
#endif
    return h;
  }

  Communicator comm{MPI_COMM_WORLD};
  std::vector<float*> owned;
  int cuda_errors = 0;
};

// The device QR against LAPACK's: both are Householder QR (geqrf + orgqr) with the same sign
// convention, so the orthonormal columns agree within rounding. Bound: 16 n u per entry
// (entries are at most 1; n = 50 rows; u = 2^-24), and Q^T Q = I within the same.
TEST_F(PowerSgdDeviceGpu, QrMatchesTheHostQr) {
#if GRADWIRE_HAVE_CUDA
  const std::size_t n = 50, r = 3;
  std::vector<float> a(n * r);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(signed_unit(5, 0, i));
  std::vector<float> host = a, dev = a;
  const Caught h = catch_error([&] { gradwire::coll::orthonormalize_columns(host.data(), n, r); });
  if (h.thrown && h.code == ErrorCode::Unsupported) GTEST_SKIP() << "gradwire built without LAPACKE";
  ASSERT_FALSE(h.thrown) << h.message;
  gradwire::coll::orthonormalize_columns_device(dev.data(), n, r);
  const double bound = 16.0 * n * 0x1.0p-24;
  EXPECT_LE(max_diff(host, dev), bound);
  for (std::size_t j = 0; j < r; ++j)
    for (std::size_t k = 0; k < r; ++k) {
      double s = 0;
      for (std::size_t i = 0; i < n; ++i) s += static_cast<double>(dev[i * r + j]) * dev[i * r + k];
      EXPECT_NEAR(s, j == k ? 1.0 : 0.0, bound) << "column " << j << " . column " << k;
    }
#endif
}

// A gradient whose average has rank 2 comes back exactly (up to float rounding) at r = 2: the
// host test's bound, 1e-5 of the scale. The plan says where it runs.
TEST_F(PowerSgdDeviceGpu, RecoversALowRankGradientExactly) {
  std::vector<float> g;
  const std::vector<double> want = rank2_gradient(comm.rank(), comm.size(), g);
  Plan plan(comm, psgd_config(2, true, Memory::Device));
  EXPECT_EQ(plan.stats().algorithm, "powersgd");
  EXPECT_EQ(plan.stats().transport, "mpi+device-powersgd");
  float* d = device_floats(kCount);
  put(d, g);
  plan.run(d, d);  // in place
  const std::vector<float> out = get(d, kCount);
  EXPECT_EQ(cuda_errors, 0);
  double worst = 0, scale = 0;
  for (std::size_t i = 0; i < kCount; ++i) {
    worst = std::max(worst, std::fabs(out[i] - want[i]));
    scale = std::max(scale, std::fabs(want[i]));
  }
  EXPECT_LE(worst, 1e-5 * scale) << "worst " << worst << " of " << scale;
  EXPECT_TRUE(identical_everywhere(out.data(), out.size() * 4));
}

// Full-rank random gradients, error feedback, warm start: four steps of the device plan
// against the host plan with the same seed. Bound per step: 1e-3 of the result's largest
// element. Why: each step's QR and products differ from the host's by rounding (~1e-6
// relative, QrMatchesTheHostQr); the subspace of the top r singular vectors amplifies a
// perturbation by ||M|| / (gap between singular values r and r+1), about 20 for these
// 40x30 matrices, and error feedback and the warm start carry it into the next steps.
// Both plans send exactly the same bytes.
TEST_F(PowerSgdDeviceGpu, MatchesTheHostPlanStepByStep) {
  const int me = comm.rank();
  for (std::uint32_t rank : {1u, 2u}) {
    Plan host(comm, psgd_config(rank, true, Memory::Host));
    Plan dev(comm, psgd_config(rank, true, Memory::Device));
    float* din = device_floats(kCount);
    float* dout = device_floats(kCount);
    for (int step = 0; step < 4; ++step) {
      std::vector<float> g(kCount), want(kCount);
      for (std::size_t i = 0; i < kCount; ++i) g[i] = static_cast<float>(signed_unit(20 + step, me, i));
      host.run(g.data(), want.data());
      put(din, g);
      dev.run(din, dout);
      const std::vector<float> got = get(dout, kCount);
      EXPECT_LE(max_diff(got, want), 1e-3 * max_abs(want)) << "rank " << rank << ", step " << step;
      EXPECT_TRUE(identical_everywhere(got.data(), got.size() * 4)) << "rank " << rank << ", step " << step;
    }
    EXPECT_EQ(dev.stats().wire_bytes, host.stats().wire_bytes);
    EXPECT_EQ(dev.step(), 4u);
  }
  EXPECT_EQ(cuda_errors, 0);
}

// Error feedback on the device: result + residual add up to the inputs (the host test's
// identity, within 1e-4 P), read through the residual file, which copies the device residual
// to the host; reset_residual then zeroes it.
TEST_F(PowerSgdDeviceGpu, ErrorFeedbackKeepsWhatTheFactorsLeftOut) {
  const int P = comm.size(), me = comm.rank();
  Plan plan(comm, psgd_config(1, true, Memory::Device));
  float* din = device_floats(kCount);
  float* dout = device_floats(kCount);
  std::vector<float> g(kCount);
  std::vector<double> fed(kCount, 0.0), given(kCount, 0.0);
  for (int step = 0; step < 3; ++step) {
    for (int q = 0; q < P; ++q)
      for (std::size_t i = 0; i < kCount; ++i) {
        const float x = static_cast<float>(signed_unit(10 + step, q, i));
        if (q == me) g[i] = x;
        fed[i] += x;
      }
    put(din, g);
    plan.run(din, dout);
    const std::vector<float> out = get(dout, kCount);
    for (std::size_t i = 0; i < kCount; ++i) given[i] += static_cast<double>(out[i]) * P;
  }
  EXPECT_EQ(cuda_errors, 0);
  char path[] = "/tmp/gw_psgd_dev_resid_XXXXXX";
  int fd = -1;
  if (me == 0) fd = mkstemp(path);
  MPI_Bcast(path, sizeof path, MPI_CHAR, 0, MPI_COMM_WORLD);
  auto read_residual = [&] {
    std::vector<double> resid(kCount);
    std::ifstream f(path, std::ios::binary);
    f.seekg(24);  // residual file v2: 24 header bytes, then one float64 per element
    f.read(reinterpret_cast<char*>(resid.data()), static_cast<std::streamsize>(kCount * 8));
    EXPECT_TRUE(f.good());
    return resid;
  };
  plan.save_residual(path);
  if (me == 0) {
    const std::vector<double> resid = read_residual();
    double worst = 0, left = 0;
    for (std::size_t i = 0; i < kCount; ++i) {
      worst = std::max(worst, std::fabs(given[i] + resid[i] - fed[i]));
      if (i < 1200) left = std::max(left, std::fabs(resid[i]));
    }
    EXPECT_LE(worst, 1e-4 * P) << "result + residual differ from the inputs";
    EXPECT_GT(left, 0.1) << "rank 1 of a random 40x30 matrix leaves a residual";
  }
  plan.reset_residual();
  plan.save_residual(path);
  if (me == 0) {
    const std::vector<double> resid = read_residual();
    EXPECT_EQ(*std::max_element(resid.begin(), resid.end()), 0.0);
    EXPECT_EQ(*std::min_element(resid.begin(), resid.end()), 0.0);
    close(fd);
    std::remove(path);
  }
}

// run_on_stream enqueues the result on the caller's stream (it returns before the last
// product may have run); after a stream synchronisation it equals a twin plan's run().
TEST_F(PowerSgdDeviceGpu, RunOnStreamGivesTheResultInStreamOrder) {
#if GRADWIRE_HAVE_CUDA
  cudaStream_t s = nullptr;
  EXPECT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  Plan a(comm, psgd_config(2, true, Memory::Device));
  Plan b(comm, psgd_config(2, true, Memory::Device));
  float* din = device_floats(kCount);
  float* da = device_floats(kCount);
  float* db = device_floats(kCount);
  for (int step = 0; step < 3; ++step) {
    std::vector<float> g(kCount);
    for (std::size_t i = 0; i < kCount; ++i) g[i] = static_cast<float>(signed_unit(40 + step, comm.rank(), i));
    put(din, g);
    a.run_on_stream(din, da, s);
    EXPECT_EQ(cudaStreamSynchronize(s), cudaSuccess);
    b.run(din, db);
    const std::vector<float> ra = get(da, kCount), rb = get(db, kCount);
    EXPECT_LE(max_diff(ra, rb), 1e-6 * max_abs(rb)) << "step " << step;
  }
  EXPECT_EQ(cuda_errors, 0);
  if (s) cudaStreamDestroy(s);
#endif
}

// As the host plan: a non-finite gradient in a factored matrix fails the run on every rank
// (the summed P is the same everywhere), with InvalidArgument naming it.
TEST_F(PowerSgdDeviceGpu, NonFiniteGradientFailsOnEveryRank) {
  Plan plan(comm, psgd_config(2, true, Memory::Device));
  std::vector<float> g(kCount, 0.5f);
  if (comm.rank() == 0) g[7] = std::numeric_limits<float>::quiet_NaN();
  float* d = device_floats(kCount);
  put(d, g);
  const Caught c = catch_error([&] { plan.run(d, d); });
  EXPECT_TRUE(c.thrown);
  EXPECT_EQ(c.code, ErrorCode::InvalidArgument);
  EXPECT_NE(c.message.find("non-finite"), std::string::npos) << c.message;
  EXPECT_EQ(cuda_errors, 0);
}

// DGC options are host-only for powersgd: a device plan refuses them on every rank.
TEST_F(PowerSgdDeviceGpu, DgcOptionsAreUnsupported) {
  PlanConfig cfg = psgd_config(2, true, Memory::Device);
  cfg.momentum = 0.9f;
  const Caught c = catch_error([&] { Plan plan(comm, cfg); });
  EXPECT_TRUE(c.thrown);
  EXPECT_EQ(c.code, ErrorCode::Unsupported);
  EXPECT_NE(c.message.find("DGC"), std::string::npos) << c.message;
}

}  // namespace
