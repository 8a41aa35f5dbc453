#include "codec/wire.hpp"

#include <string>

#include "gradwire/error.hpp"

namespace gradwire::wire {

void store_u32(std::byte* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::byte>(v >> (8 * i));
}
void store_u64(std::byte* p, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<std::byte>(v >> (8 * i));
}
std::uint32_t load_u32(const std::byte* p) {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= std::to_integer<std::uint32_t>(p[i]) << (8 * i);
  return v;
}
std::uint64_t load_u64(const std::byte* p) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= std::to_integer<std::uint64_t>(p[i]) << (8 * i);
  return v;
}

void write_header(const Header& h, std::byte* out) {
  store_u32(out + 0, kMagic);
  out[4] = std::byte{h.version};
  out[5] = static_cast<std::byte>(h.kind);
  out[6] = std::byte{h.bits};
  out[7] = std::byte{h.flags};
  store_u64(out + 8, h.count);
  store_u32(out + 16, h.param);
  store_u32(out + 20, h.nnz);
  store_u64(out + 24, h.body_bytes);
  store_u64(out + 32, h.seed);
  store_u64(out + 40, h.step);
  store_u64(out + 48, h.offset);
}

namespace {
[[noreturn]] void bad(const std::string& what) {
  throw Error(ErrorCode::WireFormat, "codec message: " + what);
}
std::string num(std::uint64_t v) { return std::to_string(v); }
}  // namespace

Header read_header(const std::byte* in, std::size_t in_bytes, const Header& expect) {
  if (in_bytes < kHeaderBytes) {
    bad("truncated header: " + num(in_bytes) + " bytes, need " + num(kHeaderBytes));
  }
  if (in == nullptr) bad("null buffer");
  if (load_u32(in) != kMagic) bad("bad magic (not a gradwire codec message)");
  Header h;
  h.version = std::to_integer<std::uint8_t>(in[4]);
  if (h.version != kVersion) {
    bad("unsupported version " + num(h.version) + " (this build reads " + num(kVersion) + ")");
  }
  h.kind = static_cast<CodecKind>(std::to_integer<std::uint8_t>(in[5]));
  h.bits = std::to_integer<std::uint8_t>(in[6]);
  h.flags = std::to_integer<std::uint8_t>(in[7]);
  h.count = load_u64(in + 8);
  h.param = load_u32(in + 16);
  h.nnz = load_u32(in + 20);
  h.body_bytes = load_u64(in + 24);
  h.seed = load_u64(in + 32);
  h.step = load_u64(in + 40);
  h.offset = load_u64(in + 48);
  if (h.kind != expect.kind) {
    bad("codec id " + num(static_cast<unsigned>(h.kind)) + ", decoder expects " +
        num(static_cast<unsigned>(expect.kind)));
  }
  if (h.bits != expect.bits) bad("bits " + num(h.bits) + ", decoder expects " + num(expect.bits));
  if ((h.flags & ~kKnownFlags) != 0) bad("unknown flag bits " + num(h.flags));
  if ((h.flags & ~kStochastic) != (expect.flags & ~kStochastic)) {
    bad("flags " + num(h.flags) + ", decoder expects " + num(expect.flags));
  }
  if (h.count > kMaxCount) bad("element count " + num(h.count) + " exceeds 2^40");
  if (h.count != expect.count) {
    bad("element count " + num(h.count) + ", caller expects " + num(expect.count));
  }
  if (expect.kind != CodecKind::RandK && h.param != expect.param) {
    bad("bucket/parameter " + num(h.param) + ", decoder expects " + num(expect.param));
  }
  if (expect.kind != CodecKind::RandK && (h.seed | h.step | h.offset) != 0) {
    bad("non-zero reserved fields");
  }
  if (h.nnz > h.count) bad("nnz " + num(h.nnz) + " exceeds element count " + num(h.count));
  if (h.body_bytes > in_bytes - kHeaderBytes) {
    bad("truncated body: header says " + num(h.body_bytes) + " bytes, buffer holds " +
        num(in_bytes - kHeaderBytes));
  }
  return h;
}

Header header_for(const CodecSpec& spec, std::uint64_t count) {
  Header h;
  h.kind = spec.kind;
  h.bits = static_cast<std::uint8_t>(spec.bits);
  h.count = count;
  switch (spec.kind) {
    case CodecKind::Quantize:
      h.param = spec.bucket;
      if (spec.round == Rounding::Stochastic) h.flags |= kStochastic;
      if (spec.scale == ScaleMode::AbsMax) h.flags |= kAbsMax;
      break;
    // bucket <= 2^24 uses bits 0-24; outliers (0..127) ride in bits 25-31.
    case CodecKind::Sign: h.param = spec.bucket | (spec.outliers << 25); break;
    case CodecKind::TopK:
    case CodecKind::Threshold:
      if (spec.index == IndexCoding::Delta) h.flags |= kDelta;
      [[fallthrough]];
    case CodecKind::RandK:
      if (spec.value == ValueType::F16) h.flags |= kF16Values;
      break;
    default: break;
  }
  return h;
}

}  // namespace gradwire::wire
