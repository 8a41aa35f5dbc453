#include "transport/element_ops.hpp"

#include <cstring>

#include "math/half.hpp"

namespace gradwire::detail {
namespace {

template <class T>
T load(const void* p, std::size_t i) {
  T v;
  std::memcpy(&v, static_cast<const unsigned char*>(p) + i * sizeof(T), sizeof(T));
  return v;
}

template <class T>
void store(void* p, std::size_t i, T v) {
  std::memcpy(static_cast<unsigned char*>(p) + i * sizeof(T), &v, sizeof(T));
}

template <class T>
void divide(void* x, std::size_t count, int n) {
  const T d = static_cast<T>(n);
  for (std::size_t i = 0; i < count; ++i) store<T>(x, i, load<T>(x, i) / d);
}

}  // namespace

void divide_in_place(void* x, std::size_t count, DType t, int n) {
  switch (t) {
    case DType::Float32: return divide<float>(x, count, n);
    case DType::Float64: return divide<double>(x, count, n);
    case DType::Int64: return divide<std::int64_t>(x, count, n);
    default: return;  // other dtypes take other paths (see mpi_dense.cpp)
  }
}

void predivide16(const void* in, void* out, std::size_t count, DType t, int n) {
  const float d = static_cast<float>(n);
  for (std::size_t i = 0; i < count; ++i) {
    const std::uint16_t b = load<std::uint16_t>(in, i);
    const std::uint16_t r = t == DType::BFloat16
                                ? math::float_to_bf16(math::bf16_to_float(b) / d)
                                : math::float_to_half(math::half_to_float(b) / d);
    store<std::uint16_t>(out, i, r);
  }
}

void widen_to_i64(const void* in, std::int64_t* out, std::size_t count, DType t) {
  if (t == DType::Int32) {
    for (std::size_t i = 0; i < count; ++i) out[i] = load<std::int32_t>(in, i);
  } else {
    for (std::size_t i = 0; i < count; ++i) out[i] = load<std::uint8_t>(in, i);
  }
}

void narrow_divided(const std::int64_t* in, void* out, std::size_t count, DType t, int n) {
  if (t == DType::Int32) {
    for (std::size_t i = 0; i < count; ++i)
      store<std::int32_t>(out, i, static_cast<std::int32_t>(in[i] / n));
  } else {
    for (std::size_t i = 0; i < count; ++i)
      store<std::uint8_t>(out, i, static_cast<std::uint8_t>(in[i] / n));
  }
}

}  // namespace gradwire::detail
