// Reads and writes element i of a buffer of any gradwire dtype as a double, at any alignment:
// for tests, benchmarks and reference checks, not hot paths.
#pragma once

#include <cstdint>
#include <cstring>

#include "gradwire/types.hpp"
#include "math/half.hpp"

namespace gradwire::math {

inline void put_element(void* buf, DType t, std::size_t i, double v) {
  auto* p = static_cast<unsigned char*>(buf) + i * dtype_size(t);
  switch (t) {
    case DType::Float32: { const float x = static_cast<float>(v); std::memcpy(p, &x, 4); return; }
    case DType::Float64: { std::memcpy(p, &v, 8); return; }
    case DType::Float16: { const auto x = float_to_half(static_cast<float>(v)); std::memcpy(p, &x, 2); return; }
    case DType::BFloat16: { const auto x = float_to_bf16(static_cast<float>(v)); std::memcpy(p, &x, 2); return; }
    case DType::Int32: { const auto x = static_cast<std::int32_t>(v); std::memcpy(p, &x, 4); return; }
    case DType::Int64: { const auto x = static_cast<std::int64_t>(v); std::memcpy(p, &x, 8); return; }
    case DType::UInt8: { const auto x = static_cast<std::uint8_t>(v); std::memcpy(p, &x, 1); return; }
  }
}

inline double get_element(const void* buf, DType t, std::size_t i) {
  const auto* p = static_cast<const unsigned char*>(buf) + i * dtype_size(t);
  switch (t) {
    case DType::Float32: { float x; std::memcpy(&x, p, 4); return x; }
    case DType::Float64: { double x; std::memcpy(&x, p, 8); return x; }
    case DType::Float16: { std::uint16_t x; std::memcpy(&x, p, 2); return half_to_float(x); }
    case DType::BFloat16: { std::uint16_t x; std::memcpy(&x, p, 2); return bf16_to_float(x); }
    case DType::Int32: { std::int32_t x; std::memcpy(&x, p, 4); return x; }
    case DType::Int64: { std::int64_t x; std::memcpy(&x, p, 8); return static_cast<double>(x); }
    case DType::UInt8: { std::uint8_t x; std::memcpy(&x, p, 1); return x; }
  }
  return 0;
}

}  // namespace gradwire::math
