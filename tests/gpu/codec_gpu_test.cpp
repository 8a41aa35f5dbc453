// The CUDA kernels against the host codec, bit for bit, on fresh random inputs. Skips (with
// the reason) where no GPU is present.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "codec_cuda.hpp"
#include "gradwire/codec.hpp"
#include "gradwire/error.hpp"
#include "math/half.hpp"

namespace {

using gradwire::DType;

std::string no_gpu_reason() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) return std::string("no usable CUDA device: ") + cudaGetErrorString(e);
  if (n == 0) return "no CUDA device present";
  return {};
}

#define GW_REQUIRE_GPU()                                        \
  do {                                                          \
    const std::string why = no_gpu_reason();                    \
    if (!why.empty()) GTEST_SKIP() << why;                      \
  } while (0)

template <class T>
struct DeviceBuffer {
  T* p = nullptr;
  explicit DeviceBuffer(std::size_t n) { EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&p), n * sizeof(T) + 1), cudaSuccess); }
  ~DeviceBuffer() { cudaFree(p); }
  void put(const std::vector<T>& v) { ASSERT_EQ(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess); }
  std::vector<T> get(std::size_t n) const {
    std::vector<T> v(n);
    EXPECT_EQ(cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return v;
  }
};

class GpuCodec : public ::testing::TestWithParam<const char*> {};

TEST_P(GpuCodec, KernelsMatchTheHostCodecBitForBit) {
  GW_REQUIRE_GPU();
  const gradwire::Codec c = gradwire::make_codec(GetParam());
  std::mt19937_64 rng(std::random_device{}());  // fresh inputs every run; seed printed on failure
  const std::uint64_t seed = rng();
  for (const DType dt : {DType::Float32, DType::Float16, DType::BFloat16}) {
    for (const std::size_t n : {std::size_t{1}, std::size_t{1000}, std::size_t{100003}}) {
      SCOPED_TRACE(std::string(GetParam()) + " dtype " + std::string(gradwire::dtype_name(dt)) +
                   " n=" + std::to_string(n) + " seed=" + std::to_string(seed));
      std::normal_distribution<float> d(0.0f, 1.0f);
      std::vector<float> x(n), res(n);
      for (auto& v : x) v = d(rng);
      for (auto& v : res) v = 0.01f * d(rng);
      std::vector<std::uint16_t> x16(n);
      for (std::size_t i = 0; i < n; ++i) {
        x16[i] = dt == DType::Float16 ? gradwire::math::float_to_half(x[i]) : gradwire::math::float_to_bf16(x[i]);
      }
      const void* hin = dt == DType::Float32 ? static_cast<const void*>(x.data()) : x16.data();
      const std::size_t in_bytes = n * gradwire::dtype_size(dt);
      const std::size_t cap = c.max_encoded_bytes(n);
      const std::uint64_t off = rng() % 1000, s = rng(), step = rng() % 100;

      // Host reference, with error feedback.
      std::vector<std::byte> hmsg(cap);
      std::vector<float> hres = res;
      ASSERT_EQ(c.encode(hin, dt, n, off, s, step, hmsg.data(), cap, hres.data()), cap);

      DeviceBuffer<unsigned char> din(in_bytes);
      DeviceBuffer<std::byte> dmsg(cap);
      DeviceBuffer<float> dres(n), dout(n);
      ASSERT_EQ(cudaMemcpy(din.p, hin, in_bytes, cudaMemcpyHostToDevice), cudaSuccess);
      dres.put(res);
      ASSERT_EQ(gradwire::cuda::encode(c, din.p, dt, n, off, s, step, dmsg.p, cap, dres.p, nullptr), cap);
      const auto gmsg = dmsg.get(cap);
      ASSERT_EQ(std::memcmp(gmsg.data(), hmsg.data(), cap), 0) << "encoded bytes differ";
      const auto gres = dres.get(n);
      ASSERT_EQ(std::memcmp(gres.data(), hres.data(), n * 4), 0) << "residuals differ";

      std::vector<float> hy(n);
      c.decode(hmsg.data(), cap, hy.data(), DType::Float32, n);
      gradwire::cuda::decode(c, dmsg.p, cap, dout.p, DType::Float32, n, nullptr);
      ASSERT_EQ(std::memcmp(dout.get(n).data(), hy.data(), n * 4), 0) << "decoded values differ";
      gradwire::cuda::decode_add(c, dmsg.p, cap, dout.p, n, nullptr);
      const auto twice = dout.get(n);
      for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(twice[i], hy[i] + hy[i]) << i;
    }
  }
}

TEST_P(GpuCodec, DeviceDecoderRejectsBadMessages) {
  GW_REQUIRE_GPU();
  const gradwire::Codec c = gradwire::make_codec(GetParam());
  const std::size_t n = 1000, cap = c.max_encoded_bytes(n);
  std::vector<float> x(n, 0.5f);
  std::vector<std::byte> msg(cap);
  c.encode(x.data(), DType::Float32, n, 0, 1, 1, msg.data(), cap);
  DeviceBuffer<std::byte> dmsg(cap);
  DeviceBuffer<float> dout(n);
  ASSERT_EQ(cudaMemcpy(dmsg.p, msg.data(), cap, cudaMemcpyHostToDevice), cudaSuccess);
  EXPECT_THROW(gradwire::cuda::decode(c, dmsg.p, cap - 1, dout.p, DType::Float32, n, nullptr), gradwire::Error);
  EXPECT_THROW(gradwire::cuda::decode(c, dmsg.p, 10, dout.p, DType::Float32, n, nullptr), gradwire::Error);
  if (c.bucket_size() != 0) {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::memcpy(msg.data() + 56 + 4, &nan, 4);  // a step or scale
    ASSERT_EQ(cudaMemcpy(dmsg.p, msg.data(), cap, cudaMemcpyHostToDevice), cudaSuccess);
    EXPECT_THROW(gradwire::cuda::decode(c, dmsg.p, cap, dout.p, DType::Float32, n, nullptr), gradwire::Error);
  }
}

INSTANTIATE_TEST_SUITE_P(DenseCodecs, GpuCodec,
                         ::testing::Values("none", "fp16", "bf16", "q8", "q4", "q2", "q1",
                                           "q8:round=nearest", "q4:scale=absmax", "q2:bucket=64",
                                           "sign", "sign:bucket=128"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& ch : s) {
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return s;
                         });

}  // namespace
