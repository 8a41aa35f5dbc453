// none / fp16 / bf16: one value per element, no scales. The 16-bit conversions are
// branch-free (math/half.hpp), so the loops vectorize; they are compiled twice, baseline
// and AVX2, and picked at run time (codec/isa.hpp).
#include <bit>
#include <cstring>
#include <type_traits>

#include "codec/detail.hpp"
#include "codec/elements.hpp"
#include "codec/isa.hpp"
#include "math/half.hpp"

#if GW_HAVE_AVX2_KERNELS
#include <immintrin.h>
#endif

namespace gradwire::detail {

namespace {

// The wire value of v, and v's value after the round trip.
struct Fp16Wire {
  static std::uint16_t to(float v) { return math::float_to_half(v); }
  static float from(std::uint16_t w) { return math::half_to_float(w); }
};
struct Bf16Wire {
  static std::uint16_t to(float v) { return math::float_to_bf16(v); }
  static float from(std::uint16_t w) { return math::bf16_to_float(w); }
};

// One chunk: wire words of v = in (+ e), residual e = v - from(wire).
// in and e may overlap only element for element (the same loop order as the scalar code).
template <class W, class T, bool kEF>
[[gnu::always_inline]] inline void encode16_body(const T* in, float* e, std::size_t m,
                                                 std::uint16_t* __restrict w) {
  for (std::size_t i = 0; i < m; ++i) {
    float v = load_elem(in, i);
    if constexpr (kEF) v += e[i];
    const std::uint16_t x = W::to(v);
    w[i] = x;
    if constexpr (kEF) e[i] = v - W::from(x);
  }
}

template <class W, class T, bool kAdd>
[[gnu::always_inline]] inline void decode16_body(const std::uint16_t* __restrict w, std::size_t m,
                                                 T* __restrict out) {
  for (std::size_t i = 0; i < m; ++i) {
    const float v = W::from(w[i]);
    if constexpr (kAdd) {
      out[i] += v;
    } else {
      store_elem(out, i, v);
    }
  }
}

template <class W, class T, bool kEF>
void encode16_generic(const T* in, float* e, std::size_t m, std::uint16_t* w) {
  encode16_body<W, T, kEF>(in, e, m, w);
}
template <class W, class T, bool kEF>
GW_TARGET_AVX2 void encode16_avx2(const T* in, float* e, std::size_t m, std::uint16_t* w) {
  encode16_body<W, T, kEF>(in, e, m, w);
}
template <class W, class T, bool kAdd>
void decode16_generic(const std::uint16_t* w, std::size_t m, T* out) {
  decode16_body<W, T, kAdd>(w, m, out);
}
template <class W, class T, bool kAdd>
GW_TARGET_AVX2 void decode16_avx2(const std::uint16_t* w, std::size_t m, T* out) {
  decode16_body<W, T, kAdd>(w, m, out);
}

#if GW_HAVE_AVX2_KERNELS
// fp16 from float32 with F16C: vcvtps2ph with its rounding fixed to nearest even is the
// IEEE conversion, the same bits as math::float_to_half for every non-NaN input (subnormal
// results included; checked on all 2^32 inputs, also under FTZ/DAZ). NaN differs (F16C
// keeps payload bits, math::float_to_half sends 0x7e00), so a group of 8 with a NaN takes
// the scalar path.
template <bool kEF>
GW_TARGET_F16C void encode_fp16_f16c(const float* in, float* e, std::size_t m, std::uint16_t* w) {
  std::size_t i = 0;
  for (; i + 8 <= m; i += 8) {
    __m256 v = _mm256_loadu_ps(in + i);
    if constexpr (kEF) v = _mm256_add_ps(v, _mm256_loadu_ps(e + i));
    const __m256 nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
    if (!_mm256_testz_ps(nan, nan)) {
      encode16_body<Fp16Wire, float, kEF>(in + i, kEF ? e + i : nullptr, 8, w + i);
      continue;
    }
    const __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(w + i), h);
    if constexpr (kEF) _mm256_storeu_ps(e + i, _mm256_sub_ps(v, _mm256_cvtph_ps(h)));
  }
  encode16_body<Fp16Wire, float, kEF>(in + i, kEF ? e + i : nullptr, m - i, w + i);
}

// float32 from fp16 with vcvtph2ps: exact, as math::half_to_float, except that it quiets a
// signalling NaN; a group of 8 with an all-ones exponent (inf or NaN) takes the scalar path.
template <bool kAdd>
GW_TARGET_F16C void decode_fp16_f16c(const std::uint16_t* w, std::size_t m, float* out) {
  const __m128i expo = _mm_set1_epi16(0x7c00);
  std::size_t i = 0;
  for (; i + 8 <= m; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i));
    const __m128i special = _mm_cmpeq_epi16(_mm_and_si128(h, expo), expo);
    if (!_mm_testz_si128(special, special)) {
      decode16_body<Fp16Wire, float, kAdd>(w + i, 8, out + i);
      continue;
    }
    __m256 f = _mm256_cvtph_ps(h);
    if constexpr (kAdd) f = _mm256_add_ps(_mm256_loadu_ps(out + i), f);
    _mm256_storeu_ps(out + i, f);
  }
  decode16_body<Fp16Wire, float, kAdd>(w + i, m - i, out + i);
}
#endif

template <class W, class T, bool kEF>
void encode16(const T* in, float* e, std::size_t n, std::byte* out) {
  // 16-bit words assembled in registers and stored little endian with memcpy: the output
  // has no alignment guarantee, and x86 / the CUDA targets are little endian (checked below).
  constexpr std::size_t kChunk = 512;
  const bool avx2 = use_avx2();
  alignas(32) std::uint16_t buf[kChunk];
  for (std::size_t c = 0; c < n; c += kChunk) {
    const std::size_t m = n - c < kChunk ? n - c : kChunk;
    float* ec = kEF ? e + c : nullptr;
#if GW_HAVE_AVX2_KERNELS
    if constexpr (std::is_same_v<W, Fp16Wire> && std::is_same_v<T, float>) {
      if (avx2) {
        encode_fp16_f16c<kEF>(in + c, ec, m, buf);
        std::memcpy(out + 2 * c, buf, 2 * m);
        continue;
      }
    }
#endif
    if (avx2) {
      encode16_avx2<W, T, kEF>(in + c, ec, m, buf);
    } else {
      encode16_generic<W, T, kEF>(in + c, ec, m, buf);
    }
    std::memcpy(out + 2 * c, buf, 2 * m);
  }
}

template <class W, class T, bool kAdd>
void decode16(const std::byte* in, std::size_t n, T* out) {
  constexpr std::size_t kChunk = 512;
  const bool avx2 = use_avx2();
  alignas(32) std::uint16_t buf[kChunk];
  for (std::size_t c = 0; c < n; c += kChunk) {
    const std::size_t m = n - c < kChunk ? n - c : kChunk;
    std::memcpy(buf, in + 2 * c, 2 * m);
#if GW_HAVE_AVX2_KERNELS
    if constexpr (std::is_same_v<W, Fp16Wire> && std::is_same_v<T, float>) {
      if (avx2) {
        decode_fp16_f16c<kAdd>(buf, m, out + c);
        continue;
      }
    }
#endif
    if (avx2) {
      decode16_avx2<W, T, kAdd>(buf, m, out + c);
    } else {
      decode16_generic<W, T, kAdd>(buf, m, out + c);
    }
  }
}

template <class T, bool kEF>
void encode32(const T* in, float* e, std::size_t n, std::byte* out) {
  constexpr std::size_t kChunk = 512;
  float buf[kChunk];
  for (std::size_t c = 0; c < n; c += kChunk) {
    const std::size_t m = n - c < kChunk ? n - c : kChunk;
    for (std::size_t i = 0; i < m; ++i) {
      float v = load_elem(in, c + i);
      if constexpr (kEF) {
        v += e[c + i];
        e[c + i] = 0.0f;
      }
      buf[i] = v;
    }
    std::memcpy(out + 4 * c, buf, 4 * m);
  }
}

template <class T, bool kAdd>
void decode32(const std::byte* in, std::size_t n, T* out) {
  if constexpr (!kAdd && std::is_same_v<T, float>) {
    std::memcpy(out, in, 4 * n);
  } else {
    constexpr std::size_t kChunk = 512;
    float buf[kChunk];
    for (std::size_t c = 0; c < n; c += kChunk) {
      const std::size_t m = n - c < kChunk ? n - c : kChunk;
      std::memcpy(buf, in + 4 * c, 4 * m);
      for (std::size_t i = 0; i < m; ++i) {
        if constexpr (kAdd) {
          out[c + i] += buf[i];
        } else {
          store_elem(out, c + i, buf[i]);
        }
      }
    }
  }
}

static_assert(std::endian::native == std::endian::little,
              "the wire format is little endian; a big-endian port must byte-swap here");

}  // namespace

std::size_t encode_cast(const CodecSpec& s, const EncodeArgs& a) {
  return with_float_dtype(a.dtype, [&](auto tag) -> std::size_t {
    using T = decltype(tag);
    const T* in = static_cast<const T*>(a.in);
    std::byte* out = a.out + wire::kHeaderBytes;
    const bool ef = a.residual != nullptr;
    switch (s.kind) {
      case CodecKind::Fp16:
        ef ? encode16<Fp16Wire, T, true>(in, a.residual, a.count, out)
           : encode16<Fp16Wire, T, false>(in, nullptr, a.count, out);
        return 2 * a.count;
      case CodecKind::Bf16:
        ef ? encode16<Bf16Wire, T, true>(in, a.residual, a.count, out)
           : encode16<Bf16Wire, T, false>(in, nullptr, a.count, out);
        return 2 * a.count;
      default:
        ef ? encode32<T, true>(in, a.residual, a.count, out)
           : encode32<T, false>(in, nullptr, a.count, out);
        return 4 * a.count;
    }
  });
}

void decode_cast(const CodecSpec& s, const std::byte* body, std::size_t count, DecodeTarget t) {
  auto run = [&](auto tag, auto add) {
    using T = decltype(tag);
    constexpr bool kAdd = decltype(add)::value;
    T* out = static_cast<T*>(t.out);
    switch (s.kind) {
      case CodecKind::Fp16: decode16<Fp16Wire, T, kAdd>(body, count, out); break;
      case CodecKind::Bf16: decode16<Bf16Wire, T, kAdd>(body, count, out); break;
      default: decode32<T, kAdd>(body, count, out); break;
    }
  };
  if (t.add) {
    run(float{}, std::true_type{});
  } else {
    with_float_dtype(t.dtype, [&](auto tag) { run(tag, std::false_type{}); });
  }
}

}  // namespace gradwire::detail
