// Shared helpers of the codec tests: seeded inputs and encode/decode shorthands.
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

#include "gradwire/codec.hpp"
#include "gradwire/types.hpp"
#include "math/half.hpp"

namespace gwtest {

inline std::vector<float> gaussian(std::size_t n, std::uint64_t seed, float sigma = 1.0f,
                                   float mean = 0.0f) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> d(mean, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

inline std::vector<std::byte> encode(const gradwire::Codec& c, const float* x, std::size_t n,
                                     std::uint64_t offset = 0, std::uint64_t seed = 1,
                                     std::uint64_t step = 0, float* residual = nullptr) {
  std::vector<std::byte> out(c.max_encoded_bytes(n));
  const std::size_t bytes = c.encode(x, gradwire::DType::Float32, n, offset, seed, step,
                                     out.data(), out.size(), residual);
  out.resize(bytes);
  return out;
}

inline std::vector<float> decode(const gradwire::Codec& c, const std::vector<std::byte>& m,
                                 std::size_t n) {
  std::vector<float> y(n);
  c.decode(m.data(), m.size(), y.data(), gradwire::DType::Float32, n);
  return y;
}

// Every codec spec the tests sweep.
inline const std::vector<const char*>& all_specs() {
  static const std::vector<const char*> s = {
      "none", "fp16", "bf16", "q8", "q4", "q2", "q1",
      "q8:round=nearest", "q4:round=nearest,scale=absmax", "q2:scale=absmax",
      "q1:round=nearest", "q4:bucket=64", "q8:bucket=1024,scale=absmax", "sign", "sign:bucket=128",
      "topk:0.01", "topk:k=37", "topk:0.1,index=delta,value=f16", "randk:0.05",
      "randk:0.2,value=f16", "threshold:1e-3", "threshold:0.5,index=delta,value=f16"};
  return s;
}

}  // namespace gwtest
