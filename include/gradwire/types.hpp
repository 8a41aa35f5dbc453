// Element types and reduction operators shared by every gradwire API.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace gradwire {

// Values match the C ABI's gw_dtype_t; never renumber (they travel in wire headers).
enum class DType : int {
  Float32 = 0,
  Float64 = 1,
  Float16 = 2,
  BFloat16 = 3,
  Int32 = 4,
  Int64 = 5,
  UInt8 = 6,
};

// Values match the C ABI's gw_op_t.
enum class ReduceOp : int {
  Sum = 0,
  Avg = 1,  // sum / size; integers truncate toward zero (see docs/collectives.md)
  Min = 2,
  Max = 3,
  Prod = 4,
};

// Bytes per element; 0 for a value outside the enum.
std::size_t dtype_size(DType t) noexcept;
std::string_view dtype_name(DType t) noexcept;
std::string_view op_name(ReduceOp op) noexcept;
bool is_valid(DType t) noexcept;
bool is_valid(ReduceOp op) noexcept;
bool is_float(DType t) noexcept;

// Storage types for the 16-bit floats: raw bits, so that no arithmetic happens by accident.
struct float16_t { std::uint16_t bits; };
struct bfloat16_t { std::uint16_t bits; };

template <class T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::Float32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::Float64; };
template <> struct dtype_of<float16_t> { static constexpr DType value = DType::Float16; };
template <> struct dtype_of<bfloat16_t> { static constexpr DType value = DType::BFloat16; };
template <> struct dtype_of<std::int32_t> { static constexpr DType value = DType::Int32; };
template <> struct dtype_of<std::int64_t> { static constexpr DType value = DType::Int64; };
template <> struct dtype_of<std::uint8_t> { static constexpr DType value = DType::UInt8; };
template <class T> inline constexpr DType dtype_of_v = dtype_of<T>::value;

}  // namespace gradwire
