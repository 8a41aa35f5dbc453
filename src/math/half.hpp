// float <-> float16 / bfloat16 conversions, round to nearest even, in plain integer math so
// that host and device give the same bits (the CUDA intrinsics are not used on purpose).
#pragma once

#include <cstdint>
#include <cstring>

#include "math/hd.hpp"

namespace gradwire::math {

GW_HD std::uint32_t float_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

GW_HD float bits_float(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// NaN stays NaN (quiet, payload truncated), overflow goes to +-inf, tiny values to
// subnormals or signed zero.
//
// Branch-free, so that the host loops over arrays vectorize (one select per case); the bits
// are those of the plain definition (tests/unit/codec_bits_test.cpp checks all 2^32 inputs):
// - normal results, |f| in [2^-14, 65520): round to nearest even on the integer bits;
// - subnormal results, |f| < 2^-14: |f| + 0.5f rounds, in IEEE single precision with round
//   to nearest even (the default mode; the codec math assumes it throughout), at the unit
//   2^-24 of a half subnormal, so the low bits of the sum are the half's bits. A float32
//   subnormal input (flushed or not) lands on +-0 either way, and the sum is never
//   subnormal, so flush-to-zero modes give the same bits;
// - |f| >= 65520: +-inf; NaN: the quiet NaN 0x7e00 with f's sign.
GW_HD std::uint16_t float_to_half(float f) {
  const std::uint32_t x = float_bits(f);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  // Signed integers: a < 2^31, and signed compares vectorize on every x86 level.
  const std::int32_t a = static_cast<std::int32_t>(x & 0x7fffffffu);
  const std::uint32_t ua = static_cast<std::uint32_t>(a);
  const std::uint32_t normal = (ua + 0xfffu + ((ua >> 13) & 1u) - 0x38000000u) >> 13;
  const std::uint32_t sub = float_bits(bits_float(ua) + 0.5f) - 0x3f000000u;
  std::uint32_t r = a < 0x38800000 ? sub : normal;
  r = a >= 0x477ff000 ? 0x7c00u : r;
  r = a > 0x7f800000 ? 0x7e00u : r;
  return static_cast<std::uint16_t>(sign | r);
}

// Branch-free as well (same bits as the plain definition, all 2^16 inputs tested):
// subnormals are m * 2^-24, exact in single precision.
GW_HD float half_to_float(std::uint16_t h) {
  const std::uint32_t u = h;
  const std::uint32_t sign = (u & 0x8000u) << 16;
  const std::int32_t e = static_cast<std::int32_t>(u & 0x7c00u);
  const std::uint32_t body = (u & 0x7fffu) << 13;
  const std::uint32_t sub = float_bits(static_cast<float>(static_cast<std::int32_t>(u & 0x3ffu)) *
                                       5.9604644775390625e-8f);  // m * 2^-24
  std::uint32_t r = body + 0x38000000u;                          // exponent + (127 - 15)
  r = e == 0x7c00 ? (body | 0x7f800000u) : r;
  r = e == 0 ? sub : r;
  return bits_float(sign | r);
}

GW_HD std::uint16_t float_to_bf16(float f) {
  const std::uint32_t x = float_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((x >> 16) | 0x40u);
  return static_cast<std::uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

GW_HD float bf16_to_float(std::uint16_t b) {
  return bits_float(static_cast<std::uint32_t>(b) << 16);
}

}  // namespace gradwire::math
