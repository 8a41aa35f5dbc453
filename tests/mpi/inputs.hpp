// Verifiable inputs, as nccl-tests makes them: a value is a pure function of (seed, rank,
// index), so every rank can compute every other rank's input and the exact reference.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include <gradwire/types.hpp>

#include "math/element_io.hpp"

namespace gwtest {

inline std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Uniform in [0, 1).
inline double unit(std::uint64_t seed, int rank, std::size_t i) {
  return static_cast<double>(mix(seed ^ mix(static_cast<std::uint64_t>(rank) * 1000003u + i)) >> 11) *
         0x1.0p-53;
}

// The value rank `rank` contributes at index i, already representable in dtype t. Ranges keep
// integer sums and products exact: prod uses small magnitudes.
inline double value(gradwire::DType t, gradwire::ReduceOp op, std::uint64_t seed, int rank,
                    std::size_t i) {
  using gradwire::DType;
  const double u = unit(seed, rank, i);
  const bool prod = op == gradwire::ReduceOp::Prod;
  switch (t) {
    case DType::Int32:
    case DType::Int64: return prod ? std::floor(u * 5) - 2 : std::floor(u * 2001) - 1000;
    case DType::UInt8: return prod ? std::floor(u * 3) : std::floor(u * 256);
    case DType::Float16: return gradwire::math::half_to_float(gradwire::math::float_to_half(static_cast<float>(u * 8 - 4)));
    case DType::BFloat16: return gradwire::math::bf16_to_float(gradwire::math::float_to_bf16(static_cast<float>(u * 8 - 4)));
    case DType::Float32: return static_cast<float>(prod ? 0.5 + u * 1.5 : u * 8 - 4);
    case DType::Float64: return prod ? 0.5 + u * 1.5 : u * 8 - 4;
  }
  return 0;
}

inline void put(void* buf, gradwire::DType t, std::size_t i, double v) {
  gradwire::math::put_element(buf, t, i, v);
}
inline double get(const void* buf, gradwire::DType t, std::size_t i) {
  return gradwire::math::get_element(buf, t, i);
}

// Unit roundoff of the dtype's arithmetic.
inline double unit_roundoff(gradwire::DType t) {
  using gradwire::DType;
  switch (t) {
    case DType::Float32: return 0x1.0p-24;
    case DType::Float64: return 0x1.0p-53;
    case DType::Float16: return 0x1.0p-11;
    case DType::BFloat16: return 0x1.0p-8;
    default: return 0;
  }
}

// A byte buffer whose element 0 sits one byte past an aligned address when `unaligned`.
struct Buffer {
  Buffer(std::size_t bytes, bool unaligned) : raw(bytes + 16), offset(unaligned ? 1 : 0) {}
  void* data() { return raw.data() + offset; }
  std::vector<unsigned char> raw;
  std::size_t offset;
};

}  // namespace gwtest
