// Philox4x32-10, the counter-based generator of Salmon, Moraes, Dror and Shaw, "Parallel
// random numbers: as easy as 1, 2, 3" (SC'11), written from the published round function
// and constants. Stateless: the same (key, counter) gives the same bits on any thread layout,
// host or device, which is what lets a CPU test pin the GPU kernels' stochastic rounding.
#pragma once

#include <cstdint>

#include "math/hd.hpp"

namespace gradwire::math {

struct U32x4 {
  std::uint32_t v[4];
};

GW_HD U32x4 philox4x32_10(U32x4 ctr, std::uint32_t k0, std::uint32_t k1) {
  constexpr std::uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;  // multipliers
  constexpr std::uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;  // Weyl key increments
  for (int r = 0; r < 10; ++r) {
    const std::uint64_t p0 = static_cast<std::uint64_t>(kM0) * ctr.v[0];
    const std::uint64_t p1 = static_cast<std::uint64_t>(kM1) * ctr.v[2];
    const std::uint32_t hi0 = static_cast<std::uint32_t>(p0 >> 32), lo0 = static_cast<std::uint32_t>(p0);
    const std::uint32_t hi1 = static_cast<std::uint32_t>(p1 >> 32), lo1 = static_cast<std::uint32_t>(p1);
    ctr = U32x4{{hi1 ^ ctr.v[1] ^ k0, lo1, hi0 ^ ctr.v[3] ^ k1, lo0}};
    k0 += kW0;
    k1 += kW1;
  }
  return ctr;
}

// Independent streams drawn from one user seed: the key is the seed xor a per-purpose
// constant, so random-k's index choice and stochastic rounding never share bits.
enum class Stream : std::uint32_t { Rounding = 0x5352u /* "SR" */, RandK = 0x524bu /* "RK" */ };

// Counter for element g: block g/4 and the step; the element takes word g%4 of its block.
GW_HD U32x4 philox_block(std::uint64_t seed, std::uint64_t step, Stream stream,
                         std::uint64_t block) {
  const U32x4 ctr{{static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32),
                   static_cast<std::uint32_t>(step), static_cast<std::uint32_t>(step >> 32)}};
  return philox4x32_10(ctr, static_cast<std::uint32_t>(seed) ^ static_cast<std::uint32_t>(stream),
                       static_cast<std::uint32_t>(seed >> 32));
}

// The 32 random bits of global element g.
GW_HD std::uint32_t philox_word(std::uint64_t seed, std::uint64_t step, Stream stream,
                                std::uint64_t g) {
  return philox_block(seed, step, stream, g >> 2).v[g & 3u];
}

}  // namespace gradwire::math
