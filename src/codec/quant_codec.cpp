// Bucketed uniform quantization (q1, q2, q4, q8) and sign, host side. Per bucket: one pass
// for the range (math::bucket_stats), one pass that rounds onto the grid, updates the
// residual and packs. Chunks of 256 codes keep both passes in L1 and stay byte aligned
// (buckets are multiples of 64 elements).
#include <cfloat>
#include <cmath>
#include <cstring>
#include <string>
#include <type_traits>

#include "codec/detail.hpp"
#include "codec/elements.hpp"
#include "codec/pack.hpp"
#include "gradwire/error.hpp"
#include "math/philox.hpp"
#include "math/quant.hpp"

namespace gradwire::detail {

namespace {

constexpr std::uint32_t kChunk = 256;

void store_f32(std::byte* p, float v) { std::memcpy(p, &v, 4); }
float load_f32(const std::byte* p) {
  float v;
  std::memcpy(&v, p, 4);
  return v;
}

template <class T, bool kEF>
struct Source {
  const T* x;
  float* e;
  float operator()(std::size_t i) const {
    float v = load_elem(x, i);
    if constexpr (kEF) v += e[i];
    return v;
  }
};

[[noreturn]] void non_finite(const char* what, std::size_t i, std::uint64_t g) {
  throw Error(ErrorCode::InvalidArgument,
              std::string(what) + " at slice element " + std::to_string(i) + " (global index " +
                  std::to_string(g) + "); quantizing codecs need finite input (docs/codecs.md)");
}

template <class Src>
void check_finite(const Src& src, std::size_t s, std::uint32_t n, std::uint64_t goff) {
  for (std::uint32_t i = 0; i < n; ++i) {
    if (math::abs_bits(src(s + i)) >= math::kInfBits) {
      non_finite("non-finite value (input + residual)", s + i, goff + s + i);
    }
  }
}

// Random words of elements g0 .. g0+n-1 at r[lead + i], lead = g0 % 4. The blocks' counters
// live in lane arrays so the ten rounds vectorize across blocks; the words are those of
// math::philox_block (the Philox test checks it).
void fill_random(std::uint64_t seed, std::uint64_t step, std::uint64_t g0, std::uint32_t n,
                 std::uint32_t* r) {
  constexpr std::uint32_t kMax = kChunk / 4 + 2;
  const std::uint64_t b0 = g0 >> 2;
  const std::uint32_t nb = static_cast<std::uint32_t>(((g0 & 3u) + n + 3u) / 4u);
  std::uint32_t c0[kMax], c1[kMax], c2[kMax], c3[kMax];
  for (std::uint32_t j = 0; j < nb; ++j) {
    c0[j] = static_cast<std::uint32_t>(b0 + j);
    c1[j] = static_cast<std::uint32_t>((b0 + j) >> 32);
    c2[j] = static_cast<std::uint32_t>(step);
    c3[j] = static_cast<std::uint32_t>(step >> 32);
  }
  std::uint32_t k0 = math::philox_key0(seed, math::Stream::Rounding), k1 = math::philox_key1(seed);
  for (int round = 0; round < 10; ++round) {
    for (std::uint32_t j = 0; j < nb; ++j) math::philox_round(c0[j], c1[j], c2[j], c3[j], k0, k1);
    k0 += math::kPhiloxW0;
    k1 += math::kPhiloxW1;
  }
  for (std::uint32_t j = 0; j < nb; ++j) {
    r[4 * j + 0] = c0[j];
    r[4 * j + 1] = c1[j];
    r[4 * j + 2] = c2[j];
    r[4 * j + 3] = c3[j];
  }
}

// The rounding loops on plain arrays, where the vectorizer can see them.
// noinline + restrict: a standalone loop the vectorizer takes whole (verified with
// -DGRADWIRE_VEC_REPORT=ON, docs/codecs.md).
[[gnu::noinline]] void round_nearest_codes(const float* __restrict v, std::uint32_t m, math::Grid g,
                                           float lf, std::uint8_t* __restrict q) {
  for (std::uint32_t i = 0; i < m; ++i) {
    q[i] = static_cast<std::uint8_t>(math::round_nearest(math::grid_position(v[i], g, lf)));
  }
}
[[gnu::noinline]] void round_stochastic_codes(const float* __restrict v,
                                              const std::uint32_t* __restrict r, std::uint32_t m,
                                              math::Grid g, float lf, std::uint8_t* __restrict q) {
  for (std::uint32_t i = 0; i < m; ++i) {
    q[i] = static_cast<std::uint8_t>(math::round_stochastic(math::grid_position(v[i], g, lf), r[i]));
  }
}

template <std::uint32_t B, bool kStoch, bool kEF, class T>
void quantize_slice(const CodecSpec& spec, const EncodeArgs& a, std::byte* scales,
                    std::byte* payload) {
  const Source<T, kEF> src{static_cast<const T*>(a.in), a.residual};
  const std::uint32_t levels = math::levels_of(B);
  const float lf = static_cast<float>(levels);
  const bool absmax = spec.scale == ScaleMode::AbsMax;
  std::uint8_t q[kChunk];
  std::uint32_t r[kChunk + 8];
  std::size_t b = 0;
  for (std::size_t s = 0; s < a.count; s += spec.bucket, ++b) {
    const std::uint32_t n =
        static_cast<std::uint32_t>(a.count - s < spec.bucket ? a.count - s : spec.bucket);
    const math::BucketStats st = math::bucket_stats([&](std::uint32_t i) { return src(s + i); }, n);
    if (st.amax >= math::kInfBits) check_finite(src, s, n, a.global_offset);
    math::Grid g;
    if (absmax) {
      const float m = math::bits_float(st.amax);
      g = math::grid_absmax(m, levels);
      store_f32(scales + 4 * b, m);
    } else {
      if (static_cast<double>(st.hi) - static_cast<double>(st.lo) > static_cast<double>(FLT_MAX)) {
        throw Error(ErrorCode::InvalidArgument,
                    "bucket at slice element " + std::to_string(s) +
                        ": max - min overflows float; use scale=absmax or rescale the input");
      }
      g = math::grid_minmax(st.lo, st.hi, levels);
      store_f32(scales + 8 * b, g.lo);
      store_f32(scales + 8 * b + 4, g.step);
    }
    for (std::uint32_t c = 0; c < n; c += kChunk) {
      const std::uint32_t m = n - c < kChunk ? n - c : kChunk;
      const std::size_t base = s + c;
      const std::uint64_t g0 = a.global_offset + base;
      if constexpr (kStoch) fill_random(a.seed, a.step, g0, m, r);
      const std::uint32_t lead = static_cast<std::uint32_t>(g0 & 3u);
      float vb[kChunk];
      const float* v = vb;
      if constexpr (std::is_same_v<T, float> && !kEF) {
        v = src.x + base;
      } else {
        for (std::uint32_t i = 0; i < m; ++i) vb[i] = src(base + i);
      }
      if constexpr (kStoch) {
        round_stochastic_codes(v, r + lead, m, g, lf, q);
      } else {
        round_nearest_codes(v, m, g, lf, q);
      }
      if constexpr (kEF) {
        for (std::uint32_t i = 0; i < m; ++i) a.residual[base + i] = v[i] - math::dequantize(q[i], g);
      }
      pack_codes<B>(q, m, payload + base * B / 8);
    }
  }
}

template <std::uint32_t B>
void quantize_dispatch(const CodecSpec& s, const EncodeArgs& a, std::byte* scales,
                       std::byte* payload) {
  with_float_dtype(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    const bool st = s.round == Rounding::Stochastic;
    if (a.residual) {
      st ? quantize_slice<B, true, true, T>(s, a, scales, payload)
         : quantize_slice<B, false, true, T>(s, a, scales, payload);
    } else {
      st ? quantize_slice<B, true, false, T>(s, a, scales, payload)
         : quantize_slice<B, false, false, T>(s, a, scales, payload);
    }
  });
}

template <bool kEF, class T>
void sign_slice(const CodecSpec& spec, const EncodeArgs& a, std::byte* scales,
                std::byte* payload) {
  const Source<T, kEF> src{static_cast<const T*>(a.in), a.residual};
  std::uint8_t q[kChunk];
  std::size_t b = 0;
  for (std::size_t s = 0; s < a.count; s += spec.bucket, ++b) {
    const std::uint32_t n =
        static_cast<std::uint32_t>(a.count - s < spec.bucket ? a.count - s : spec.bucket);
    const math::BucketStats st = math::bucket_stats([&](std::uint32_t i) { return src(s + i); }, n);
    if (st.amax >= math::kInfBits) check_finite(src, s, n, a.global_offset);
    const float scale = st.abs_sum / static_cast<float>(n);
    if (!std::isfinite(scale)) {
      throw Error(ErrorCode::InvalidArgument, "bucket at slice element " + std::to_string(s) +
                                                  ": sum of |x| overflows float");
    }
    store_f32(scales + 4 * b, scale);
    for (std::uint32_t c = 0; c < n; c += kChunk) {
      const std::uint32_t m = n - c < kChunk ? n - c : kChunk;
      const std::size_t base = s + c;
      for (std::uint32_t i = 0; i < m; ++i) {
        const float v = src(base + i);
        const std::uint32_t bit = math::sign_bit(v);
        q[i] = static_cast<std::uint8_t>(bit);
        if constexpr (kEF) a.residual[base + i] = v - math::sign_value(bit, scale);
      }
      pack_codes<1>(q, m, payload + base / 8);
    }
  }
}

std::uint64_t bucket_count(const CodecSpec& s, std::uint64_t count) {
  return (count + s.bucket - 1) / s.bucket;
}

[[noreturn]] void bad_scale(std::size_t b, const char* what, float v) {
  throw Error(ErrorCode::WireFormat, "codec message: bucket " + std::to_string(b) + " has " +
                                         what + " " + std::to_string(v));
}

template <class T, bool kAdd, class Value>
void write_values(T* out, std::size_t base, std::uint32_t m, const std::uint8_t* q, Value value) {
  for (std::uint32_t i = 0; i < m; ++i) {
    const float v = value(q[i]);
    if constexpr (kAdd) {
      out[base + i] += v;
    } else {
      store_elem(out, base + i, v);
    }
  }
}

template <std::uint32_t B, bool kAdd, class T>
void dequantize_slice(const CodecSpec& spec, const std::byte* scales, const std::byte* payload,
                      std::size_t count, T* out) {
  const std::uint32_t levels = math::levels_of(B);
  const bool absmax = spec.scale == ScaleMode::AbsMax;
  std::uint8_t q[kChunk];
  std::size_t b = 0;
  for (std::size_t s = 0; s < count; s += spec.bucket, ++b) {
    const std::uint32_t n =
        static_cast<std::uint32_t>(count - s < spec.bucket ? count - s : spec.bucket);
    const math::Grid g = absmax ? math::grid_absmax(load_f32(scales + 4 * b), levels)
                                : math::Grid{load_f32(scales + 8 * b), load_f32(scales + 8 * b + 4), 0.0f};
    for (std::uint32_t c = 0; c < n; c += kChunk) {
      const std::uint32_t m = n - c < kChunk ? n - c : kChunk;
      unpack_codes<B>(payload + (s + c) * B / 8, m, q);
      write_values<T, kAdd>(out, s + c, m, q, [g](std::uint32_t code) { return math::dequantize(code, g); });
    }
  }
}

template <bool kAdd, class T>
void unsign_slice(const CodecSpec& spec, const std::byte* scales, const std::byte* payload,
                  std::size_t count, T* out) {
  std::uint8_t q[kChunk];
  std::size_t b = 0;
  for (std::size_t s = 0; s < count; s += spec.bucket, ++b) {
    const std::uint32_t n =
        static_cast<std::uint32_t>(count - s < spec.bucket ? count - s : spec.bucket);
    const float scale = load_f32(scales + 4 * b);
    for (std::uint32_t c = 0; c < n; c += kChunk) {
      const std::uint32_t m = n - c < kChunk ? n - c : kChunk;
      unpack_codes<1>(payload + (s + c) / 8, m, q);
      write_values<T, kAdd>(out, s + c, m, q,
                            [scale](std::uint32_t bit) { return math::sign_value(bit, scale); });
    }
  }
}

// Scales are checked before a single element is written.
void validate_scales(const CodecSpec& s, const std::byte* scales, std::size_t count) {
  const std::uint64_t nb = bucket_count(s, count);
  const bool pairs = s.kind == CodecKind::Quantize && s.scale == ScaleMode::MinMax;
  for (std::uint64_t b = 0; b < nb; ++b) {
    if (pairs) {
      const float lo = load_f32(scales + 8 * b), step = load_f32(scales + 8 * b + 4);
      if (!std::isfinite(lo)) bad_scale(b, "non-finite offset", lo);
      if (!std::isfinite(step) || step < 0.0f) bad_scale(b, "invalid step", step);
    } else {
      const float m = load_f32(scales + 4 * b);
      if (!std::isfinite(m) || m < 0.0f) bad_scale(b, "invalid scale", m);
    }
  }
}

template <class F>
void with_out(DecodeTarget t, F&& f) {
  if (t.add) {
    f(static_cast<float*>(t.out), std::true_type{});
  } else {
    with_float_dtype(t.dtype, [&](auto tag) {
      f(static_cast<decltype(tag)*>(t.out), std::false_type{});
    });
  }
}

}  // namespace

std::uint64_t scale_floats(const CodecSpec& s, std::uint64_t count) {
  if (s.kind == CodecKind::Quantize) {
    return bucket_count(s, count) * (s.scale == ScaleMode::MinMax ? 2u : 1u);
  }
  if (s.kind == CodecKind::Sign) return bucket_count(s, count);
  return 0;
}

std::uint64_t dense_body_bytes(const CodecSpec& s, std::uint64_t count) {
  switch (s.kind) {
    case CodecKind::None: return 4 * count;
    case CodecKind::Fp16:
    case CodecKind::Bf16: return 2 * count;
    case CodecKind::Quantize:
    case CodecKind::Sign: return 4 * scale_floats(s, count) + (count * s.bits + 7) / 8;
    default: return 0;
  }
}

std::size_t encode_quantize(const CodecSpec& s, const EncodeArgs& a) {
  std::byte* scales = a.out + wire::kHeaderBytes;
  std::byte* payload = scales + 4 * scale_floats(s, a.count);
  switch (s.bits) {
    case 1: quantize_dispatch<1>(s, a, scales, payload); break;
    case 2: quantize_dispatch<2>(s, a, scales, payload); break;
    case 4: quantize_dispatch<4>(s, a, scales, payload); break;
    default: quantize_dispatch<8>(s, a, scales, payload); break;
  }
  return dense_body_bytes(s, a.count);
}

std::size_t encode_sign(const CodecSpec& s, const EncodeArgs& a) {
  std::byte* scales = a.out + wire::kHeaderBytes;
  std::byte* payload = scales + 4 * scale_floats(s, a.count);
  with_float_dtype(a.dtype, [&](auto tag) {
    using T = decltype(tag);
    a.residual ? sign_slice<true, T>(s, a, scales, payload)
               : sign_slice<false, T>(s, a, scales, payload);
  });
  return dense_body_bytes(s, a.count);
}

void decode_quantize(const CodecSpec& s, const std::byte* body, std::size_t count,
                     DecodeTarget t) {
  validate_scales(s, body, count);
  const std::byte* payload = body + 4 * scale_floats(s, count);
  with_out(t, [&](auto* out, auto add) {
    using T = std::remove_pointer_t<decltype(out)>;
    constexpr bool kAdd = decltype(add)::value;
    switch (s.bits) {
      case 1: dequantize_slice<1, kAdd, T>(s, body, payload, count, out); break;
      case 2: dequantize_slice<2, kAdd, T>(s, body, payload, count, out); break;
      case 4: dequantize_slice<4, kAdd, T>(s, body, payload, count, out); break;
      default: dequantize_slice<8, kAdd, T>(s, body, payload, count, out); break;
    }
  });
}

void decode_sign(const CodecSpec& s, const std::byte* body, std::size_t count, DecodeTarget t) {
  validate_scales(s, body, count);
  const std::byte* payload = body + 4 * scale_floats(s, count);
  with_out(t, [&](auto* out, auto add) {
    using T = std::remove_pointer_t<decltype(out)>;
    unsign_slice<decltype(add)::value, T>(s, body, payload, count, out);
  });
}

}  // namespace gradwire::detail
