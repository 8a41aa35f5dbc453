// The stochastic-rounding stream's random words for a run of elements, from the Quantize
// codec's vectorized Philox generator (the widest kernel level the CPU has; same bits at every
// level): what shared-grid quantization (codec/grid.cpp) uses instead of one Philox call per
// element.
#pragma once

#include <cstdint>

namespace gradwire::detail {

constexpr std::uint32_t kRoundingChunk = 256;       // elements per call, at most
constexpr std::uint32_t kRoundingWords = 256 + 32;  // room r must have

// r[g0 % 4 + i] = math::philox_word(seed, step, Stream::Rounding, g0 + i) for i < n
// (n <= kRoundingChunk); words around them are overwritten.
void rounding_words(std::uint64_t seed, std::uint64_t step, std::uint64_t g0, std::uint32_t n,
                    std::uint32_t* r);

}  // namespace gradwire::detail
