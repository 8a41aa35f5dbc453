// Dense packing of b-bit codes (b = 1, 2, 4, 8): element j of a byte sits in bits
// [j*b, (j+1)*b), low bits first; the last byte is zero-padded.
#pragma once

#include <cstddef>
#include <cstdint>

namespace gradwire::detail {

template <std::uint32_t B>
void pack_codes(const std::uint8_t* q, std::uint32_t n, std::byte* out) {
  constexpr std::uint32_t kPer = 8 / B;
  const std::uint32_t full = n / kPer;
  for (std::uint32_t j = 0; j < full; ++j) {
    std::uint32_t byte = 0;
    for (std::uint32_t k = 0; k < kPer; ++k) byte |= static_cast<std::uint32_t>(q[j * kPer + k]) << (k * B);
    out[j] = static_cast<std::byte>(byte);
  }
  if (full * kPer < n) {
    std::uint32_t byte = 0;
    for (std::uint32_t k = 0; full * kPer + k < n; ++k) {
      byte |= static_cast<std::uint32_t>(q[full * kPer + k]) << (k * B);
    }
    out[full] = static_cast<std::byte>(byte);
  }
}

template <std::uint32_t B>
void unpack_codes(const std::byte* in, std::uint32_t n, std::uint8_t* q) {
  constexpr std::uint32_t kPer = 8 / B;
  constexpr std::uint32_t kMask = (1u << B) - 1u;
  const std::uint32_t full = n / kPer;
  for (std::uint32_t j = 0; j < full; ++j) {
    const std::uint32_t byte = std::to_integer<std::uint32_t>(in[j]);
    for (std::uint32_t k = 0; k < kPer; ++k) q[j * kPer + k] = static_cast<std::uint8_t>((byte >> (k * B)) & kMask);
  }
  if (full * kPer < n) {
    const std::uint32_t byte = std::to_integer<std::uint32_t>(in[full]);
    for (std::uint32_t k = 0; full * kPer + k < n; ++k) {
      q[full * kPer + k] = static_cast<std::uint8_t>((byte >> (k * B)) & kMask);
    }
  }
}

}  // namespace gradwire::detail
