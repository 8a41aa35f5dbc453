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

// One Philox round on a counter held in four scalars, so that host code can keep many
// counters in lane arrays (structure of arrays) and let the compiler vectorize across them.
GW_HD void philox_round(std::uint32_t& c0, std::uint32_t& c1, std::uint32_t& c2,
                        std::uint32_t& c3, std::uint32_t k0, std::uint32_t k1) {
  constexpr std::uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;  // multipliers
  const std::uint64_t p0 = static_cast<std::uint64_t>(kM0) * c0;
  const std::uint64_t p1 = static_cast<std::uint64_t>(kM1) * c2;
  const std::uint32_t n0 = static_cast<std::uint32_t>(p1 >> 32) ^ c1 ^ k0;
  const std::uint32_t n2 = static_cast<std::uint32_t>(p0 >> 32) ^ c3 ^ k1;
  c1 = static_cast<std::uint32_t>(p1);
  c3 = static_cast<std::uint32_t>(p0);
  c0 = n0;
  c2 = n2;
}

constexpr std::uint32_t kPhiloxW0 = 0x9E3779B9u, kPhiloxW1 = 0xBB67AE85u;  // Weyl key steps

GW_HD U32x4 philox4x32_10(U32x4 ctr, std::uint32_t k0, std::uint32_t k1) {
  for (int r = 0; r < 10; ++r) {
    philox_round(ctr.v[0], ctr.v[1], ctr.v[2], ctr.v[3], k0, k1);
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
  return ctr;
}

// Independent streams drawn from one user seed: the key is the seed xor a per-purpose
// constant, so random-k's index choice and stochastic rounding never share bits.
enum class Stream : std::uint32_t { Rounding = 0x5352u /* "SR" */, RandK = 0x524bu /* "RK" */ };

// Counter (block, step): random-k's element g takes word g%4 of block g/4; stochastic
// rounding's, half a word of block g/8 (rounding_bits).
GW_HD std::uint32_t philox_key0(std::uint64_t seed, Stream stream) {
  return static_cast<std::uint32_t>(seed) ^ static_cast<std::uint32_t>(stream);
}
GW_HD std::uint32_t philox_key1(std::uint64_t seed) { return static_cast<std::uint32_t>(seed >> 32); }

GW_HD U32x4 philox_block(std::uint64_t seed, std::uint64_t step, Stream stream,
                         std::uint64_t block) {
  const U32x4 ctr{{static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32),
                   static_cast<std::uint32_t>(step), static_cast<std::uint32_t>(step >> 32)}};
  return philox4x32_10(ctr, philox_key0(seed, stream), philox_key1(seed));
}

// The 32 random bits of global element g (random-k: its selection).
GW_HD std::uint32_t philox_word(std::uint64_t seed, std::uint64_t step, Stream stream,
                                std::uint64_t g) {
  return philox_block(seed, step, stream, g >> 2).v[g & 3u];
}

// The 16 random bits of global element g that stochastic rounding uses (math::round_stochastic):
// one Philox block of the Rounding stream serves eight elements. Element g takes block g/8,
// word (g/2) % 4, its low half for even g and its high half for odd g; i.e. half-word g % 8
// of the block read as little-endian 16-bit words. Why 16 and not 32: the rounding needs
// only 16 bits to be unbiased to within 2^-17 of a step (quant.hpp), of the order of the
// float error of the grid position itself, and Philox was most of the encoder's time.
GW_HD std::uint32_t rounding_bits(std::uint64_t seed, std::uint64_t step, std::uint64_t g) {
  const std::uint32_t w = philox_block(seed, step, Stream::Rounding, g >> 3).v[(g >> 1) & 3u];
  return (g & 1u) ? w >> 16 : w & 0xffffu;
}

}  // namespace gradwire::math
