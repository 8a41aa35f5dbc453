// top-k, random-k and threshold: sorted indices (u32 or delta varints) then values (f32 or
// f16). Random-k sends no indices: the decoder redraws them from (seed, step, offset).
#include <cstring>
#include <string>

#include "codec/detail.hpp"
#include "codec/elements.hpp"
#include "gradwire/error.hpp"
#include "math/half.hpp"
#include "math/quant.hpp"

namespace gradwire::detail {

namespace {

std::size_t varint_size(std::uint32_t v) {
  std::size_t n = 1;
  while (v >= 0x80u) {
    v >>= 7;
    ++n;
  }
  return n;
}

std::byte* put_varint(std::byte* p, std::uint32_t v) {
  while (v >= 0x80u) {
    *p++ = static_cast<std::byte>((v & 0x7fu) | 0x80u);
    v >>= 7;
  }
  *p++ = static_cast<std::byte>(v);
  return p;
}

[[noreturn]] void bad(const std::string& what) {
  throw Error(ErrorCode::WireFormat, "codec message: " + what);
}

// The delta code of position j: the first index as is, then the gap minus one (indices
// strictly increase).
std::uint32_t delta_of(const std::vector<std::uint32_t>& idx, std::size_t j) {
  return j == 0 ? idx[0] : idx[j] - idx[j - 1] - 1u;
}

float value_roundtrip(ValueType vt, float v) {
  return vt == ValueType::F16 ? math::half_to_float(math::float_to_half(v)) : v;
}

}  // namespace

std::size_t encode_sparse(const CodecSpec& s, const EncodeArgs& a, wire::Header& h) {
  if (a.count > 0xffffffffu) {
    throw Error(ErrorCode::Unsupported, "sparse codecs take slices of at most 2^32 - 1 elements");
  }
  // v: the values to sparsify. With error feedback they are accumulated into the residual,
  // which then keeps whatever is not sent.
  std::vector<float> tmp;
  const float* v = nullptr;
  if (a.residual) {
    with_float_dtype(a.dtype, [&](auto tag) {
      const auto* x = static_cast<const decltype(tag)*>(a.in);
      for (std::size_t i = 0; i < a.count; ++i) a.residual[i] += load_elem(x, i);
    });
    v = a.residual;
  } else if (a.dtype == DType::Float32) {
    v = static_cast<const float*>(a.in);
  } else {
    tmp.resize(a.count);
    with_float_dtype(a.dtype, [&](auto tag) {
      const auto* x = static_cast<const decltype(tag)*>(a.in);
      for (std::size_t i = 0; i < a.count; ++i) tmp[i] = load_elem(x, i);
    });
    v = tmp.data();
  }
  std::vector<std::uint32_t> idx;
  switch (s.kind) {
    case CodecKind::TopK: select_topk(v, a.count, h.nnz, idx); break;  // h.nnz: k
    case CodecKind::RandK:
      h.param = randk_param(s.ratio);
      h.seed = a.seed;
      h.step = a.step;
      h.offset = a.global_offset;
      randk_select(h.param, a.seed, a.step, a.global_offset, a.count, idx);
      break;
    default: {
      const std::uint32_t tb = math::abs_bits(s.threshold);
      for (std::size_t i = 0; i < a.count; ++i) {
        if (math::abs_bits(v[i]) >= tb) idx.push_back(static_cast<std::uint32_t>(i));
      }
      break;
    }
  }
  h.nnz = static_cast<std::uint32_t>(idx.size());
  const std::size_t nnz = idx.size();
  std::size_t idx_bytes = 0;
  if (s.kind != CodecKind::RandK) {
    if (s.index == IndexCoding::Delta) {
      for (std::size_t j = 0; j < nnz; ++j) idx_bytes += varint_size(delta_of(idx, j));
    } else {
      idx_bytes = 4 * nnz;
    }
  }
  const std::size_t vsize = s.value == ValueType::F16 ? 2 : 4;
  const std::size_t body = idx_bytes + vsize * nnz;
  if (wire::kHeaderBytes + body > a.cap) {
    throw Error(ErrorCode::InvalidArgument,
                "encode: output holds " + std::to_string(a.cap) + " bytes, message needs " +
                    std::to_string(wire::kHeaderBytes + body) + " (use max_encoded_bytes)");
  }
  std::byte* p = a.out + wire::kHeaderBytes;
  if (s.kind != CodecKind::RandK) {
    if (s.index == IndexCoding::Delta) {
      for (std::size_t j = 0; j < nnz; ++j) p = put_varint(p, delta_of(idx, j));
    } else {
      for (std::size_t j = 0; j < nnz; ++j, p += 4) wire::store_u32(p, idx[j]);
    }
  }
  for (std::size_t j = 0; j < nnz; ++j) {
    const float x = v[idx[j]];
    if (s.value == ValueType::F16) {
      const std::uint16_t w = math::float_to_half(x);
      p[0] = static_cast<std::byte>(w);
      p[1] = static_cast<std::byte>(w >> 8);
      p += 2;
    } else {
      std::memcpy(p, &x, 4);
      p += 4;
    }
    if (a.residual) a.residual[idx[j]] = x - value_roundtrip(s.value, x);
  }
  return body;
}

void decode_sparse(const CodecSpec& s, const wire::Header& h, const std::byte* body,
                   std::size_t count, std::size_t topk_count, DecodeTarget t) {
  const std::size_t nnz = h.nnz;
  const std::size_t vsize = s.value == ValueType::F16 ? 2 : 4;
  if (s.kind == CodecKind::TopK && nnz != topk_count) {
    bad("top-k message carries " + std::to_string(nnz) + " values, expected " +
        std::to_string(topk_count));
  }
  // Indices first, all of them validated before anything is written.
  std::vector<std::uint32_t> idx;
  std::size_t idx_bytes = 0;
  if (s.kind == CodecKind::RandK) {
    if (h.offset > wire::kMaxCount) bad("random-k offset out of range");
    randk_select(h.param, h.seed, h.step, h.offset, count, idx);
    if (idx.size() != nnz) {
      bad("random-k message carries " + std::to_string(nnz) + " values, its seed selects " +
          std::to_string(idx.size()));
    }
  } else {
    if (h.body_bytes < vsize * nnz) bad("body too short for " + std::to_string(nnz) + " values");
    const std::size_t avail = h.body_bytes - vsize * nnz;
    idx.resize(nnz);
    std::uint64_t prev = 0;
    const std::byte* p = body;
    for (std::size_t j = 0; j < nnz; ++j) {
      std::uint64_t x = 0;
      if (s.index == IndexCoding::Delta) {
        std::uint64_t d = 0;
        for (int shift = 0;; shift += 7) {
          if (static_cast<std::size_t>(p - body) >= avail) bad("truncated index varint");
          if (shift > 28) bad("index varint longer than 5 bytes");
          const std::uint32_t byte = std::to_integer<std::uint32_t>(*p++);
          d |= static_cast<std::uint64_t>(byte & 0x7fu) << shift;
          if ((byte & 0x80u) == 0) break;
        }
        x = j == 0 ? d : prev + 1 + d;
      } else {
        if (avail - static_cast<std::size_t>(p - body) < 4) bad("truncated index array");
        x = wire::load_u32(p);
        p += 4;
        if (j > 0 && x <= prev) {
          bad("indices not strictly increasing at position " + std::to_string(j));
        }
      }
      if (x >= count) {
        bad("index " + std::to_string(x) + " out of range (count " + std::to_string(count) + ")");
      }
      idx[j] = static_cast<std::uint32_t>(x);
      prev = x;
    }
    idx_bytes = static_cast<std::size_t>(p - body);
  }
  if (h.body_bytes != idx_bytes + vsize * nnz) {
    bad("body is " + std::to_string(h.body_bytes) + " bytes, its " + std::to_string(nnz) +
        " entries take " + std::to_string(idx_bytes + vsize * nnz));
  }
  const std::byte* vals = body + idx_bytes;
  auto value = [&](std::size_t j) {
    if (vsize == 2) {
      const std::uint16_t w = static_cast<std::uint16_t>(std::to_integer<std::uint16_t>(vals[2 * j]) |
                                                         (std::to_integer<std::uint16_t>(vals[2 * j + 1]) << 8));
      return math::half_to_float(w);
    }
    float f;
    std::memcpy(&f, vals + 4 * j, 4);
    return f;
  };
  if (t.add) {
    float* acc = static_cast<float*>(t.out);
    for (std::size_t j = 0; j < nnz; ++j) acc[idx[j]] += value(j);
    return;
  }
  with_float_dtype(t.dtype, [&](auto tag) {
    using T = decltype(tag);
    T* out = static_cast<T*>(t.out);
    for (std::size_t i = 0; i < count; ++i) store_elem(out, i, 0.0f);
    for (std::size_t j = 0; j < nnz; ++j) store_elem(out, idx[j], value(j));
  });
}

}  // namespace gradwire::detail
