// Element-wise helpers for the steps MPI cannot do (avg's division, 16-bit pre-division,
// integer widening). Buffers may be unaligned (callers pass any pointer), hence memcpy.
#pragma once

#include <cstddef>
#include <cstdint>

#include "gradwire/types.hpp"

namespace gradwire::detail {

// x[i] /= n for float32/float64/int64 (integers truncate toward zero).
void divide_in_place(void* x, std::size_t count, DType t, int n);
// out[i] = round(in[i] / n) for float16/bfloat16, rounding once to nearest even.
void predivide16(const void* in, void* out, std::size_t count, DType t, int n);
// out[i] = (int64) in[i] for int32/uint8.
void widen_to_i64(const void* in, std::int64_t* out, std::size_t count, DType t);
// out[i] = in[i] / n (truncated toward zero), narrowed to int32/uint8.
void narrow_divided(const std::int64_t* in, void* out, std::size_t count, DType t, int n);

}  // namespace gradwire::detail
