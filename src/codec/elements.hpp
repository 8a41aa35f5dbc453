// Loading and storing elements of the float dtypes a codec accepts, as float32.
#pragma once

#include <cstddef>
#include <string>

#include "gradwire/error.hpp"
#include "gradwire/types.hpp"
#include "math/half.hpp"

namespace gradwire::detail {

inline float load_elem(const float* p, std::size_t i) { return p[i]; }
inline float load_elem(const float16_t* p, std::size_t i) { return math::half_to_float(p[i].bits); }
inline float load_elem(const bfloat16_t* p, std::size_t i) { return math::bf16_to_float(p[i].bits); }

inline void store_elem(float* p, std::size_t i, float v) { p[i] = v; }
inline void store_elem(float16_t* p, std::size_t i, float v) { p[i].bits = math::float_to_half(v); }
inline void store_elem(bfloat16_t* p, std::size_t i, float v) { p[i].bits = math::float_to_bf16(v); }

// Calls f(T{}) with T the C++ type of a codec input/output dtype; other dtypes are an
// Unsupported error.
template <class F>
decltype(auto) with_float_dtype(DType t, F&& f) {
  switch (t) {
    case DType::Float32: return f(float{});
    case DType::Float16: return f(float16_t{});
    case DType::BFloat16: return f(bfloat16_t{});
    default: break;
  }
  throw Error(ErrorCode::Unsupported,
              "codecs take float32, float16 or bfloat16, not " + std::string(dtype_name(t)));
}

}  // namespace gradwire::detail
