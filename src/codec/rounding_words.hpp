// The stochastic-rounding stream's random bits for a run of elements, from the Quantize
// codec's vectorized Philox generator (the widest kernel level the CPU has; same bits at every
// level): what shared-grid quantization (codec/grid.cpp) uses instead of one Philox call per
// element.
#pragma once

#include <cstdint>

namespace gradwire::detail {

constexpr std::uint32_t kRoundingChunk = 256;  // elements per call, at most
constexpr std::uint32_t kRoundingBits = 320;   // room r must have (16-bit entries)

// r[g0 % 8 + i] = math::rounding_bits(seed, step, g0 + i) for i < n (n <= kRoundingChunk);
// entries around them are overwritten. r must be 64-byte aligned.
void rounding_bits(std::uint64_t seed, std::uint64_t step, std::uint64_t g0, std::uint32_t n,
                   std::uint16_t* r);

}  // namespace gradwire::detail
