// The wire header of every codec message (docs/wire-format.md): fixed 56 bytes, little
// endian, read and written field by field so that neither alignment nor host byte order
// matters.
#pragma once

#include <cstddef>
#include <cstdint>

#include "gradwire/codec.hpp"

namespace gradwire::wire {

constexpr std::uint32_t kMagic = 0x4b435747u;  // bytes "GWCK"
constexpr std::uint8_t kVersion = 1;
constexpr std::size_t kHeaderBytes = 56;
constexpr std::uint64_t kMaxCount = std::uint64_t{1} << 40;  // keeps every size in range

enum Flags : std::uint8_t {
  kStochastic = 1u << 0,  // Quantize: stochastic rounding (informative)
  kAbsMax = 1u << 1,      // Quantize: one abs-max scale per bucket instead of (lo, step)
  kDelta = 1u << 2,       // TopK, Threshold: delta/varint indices
  kF16Values = 1u << 3,   // sparse: float16 values
  kKnownFlags = 0x0f,
};

struct Header {
  std::uint8_t version = kVersion;
  CodecKind kind = CodecKind::None;
  std::uint8_t bits = 0;
  std::uint8_t flags = 0;
  std::uint64_t count = 0;
  std::uint32_t param = 0;  // bucket size (Quantize, Sign); randk probability - 1 in 2^-32
  std::uint32_t nnz = 0;    // sparse: number of values
  std::uint64_t body_bytes = 0;
  std::uint64_t seed = 0, step = 0, offset = 0;  // RandK only, else 0
};

void store_u32(std::byte* p, std::uint32_t v);
void store_u64(std::byte* p, std::uint64_t v);
std::uint32_t load_u32(const std::byte* p);
std::uint64_t load_u64(const std::byte* p);

void write_header(const Header& h, std::byte* out);
// Reads and checks the header against what the decoding codec expects (magic, version,
// kind, bits, flags, bucket, count, and that the message holds header + body_bytes).
// Throws Error(WireFormat) naming the field.
Header read_header(const std::byte* in, std::size_t in_bytes, const Header& expect);

// The header the codec writes for a message of `count` elements (body_bytes, nnz, seed...
// left for the encoder).
Header header_for(const CodecSpec& spec, std::uint64_t count);

}  // namespace gradwire::wire
