// Bucketed uniform quantization (q1, q2, q4, q8) and sign, host side. Per bucket: one pass
// for the range (the bits of math::bucket_stats), then per chunk of 256 codes the random
// bits (16 per element, math::rounding_bits), one loop that rounds onto the grid, one that updates the residual, and the packing,
// on data still in L1 (chunks stay byte aligned: buckets are multiples of 64 elements). The
// hot loops are compiled twice, baseline and AVX2, and picked at run time (codec/isa.hpp).
#include <cfloat>
#include <algorithm>
#include <cmath>
#include <functional>
#include <cstring>
#include <vector>
#include <string>
#include <type_traits>

#include "codec/detail.hpp"
#include "codec/elements.hpp"
#include "codec/isa.hpp"
#include "codec/pack.hpp"
#include "codec/rounding_words.hpp"
#include "gradwire/error.hpp"
#include "math/philox.hpp"
#include "math/quant.hpp"

#if GW_HAVE_AVX2_KERNELS
#include <immintrin.h>
#endif

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

// Random bits of elements g0 .. g0+n-1 at r[lead + i], lead = g0 % 8 (16 bits each, eight
// per Philox block: math::rounding_bits), n <= kRandSpan; r has room for kRandBits. The blocks'
// counters live in lane arrays so the ten rounds vectorize across blocks.
constexpr std::uint32_t kRandSpan = 1024;
constexpr std::uint32_t kRandBits = kRandSpan + 64;  // lead + n <= 1031 entries, whole groups of 8 blocks

std::uint32_t random_blocks(std::uint64_t g0, std::uint32_t n) {
  return static_cast<std::uint32_t>(((g0 & 7u) + n + 7u) / 8u);
}

void fill_random_generic(std::uint64_t seed, std::uint64_t step, std::uint64_t g0, std::uint32_t n,
                         std::uint16_t* r) {
  constexpr std::uint32_t kMax = kRandSpan / 8 + 2;
  const std::uint64_t b0 = g0 >> 3;
  const std::uint32_t nb = random_blocks(g0, n);
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
  for (std::uint32_t j = 0; j < nb; ++j) {  // half-words, low half first, on any byte order
    const std::uint32_t w[4] = {c0[j], c1[j], c2[j], c3[j]};
    for (int k = 0; k < 4; ++k) {
      r[8 * j + 2 * k] = static_cast<std::uint16_t>(w[k]);
      r[8 * j + 2 * k + 1] = static_cast<std::uint16_t>(w[k] >> 16);
    }
  }
}

#if GW_HAVE_AVX2_KERNELS
// The same bits with AVX2 (x86 is little endian: a block's four words, stored, are its eight
// half-words in order), four blocks per register pair and all ten rounds in registers,
// four pairs at a time. A 64-bit lane holds two counter words: A = (c0, c1) = the block
// number, B = (c2, c3) = the step. vpmuludq multiplies the low words into full 64-bit
// products p0 = M0 c0, p1 = M1 c2, and one round (math::philox_round) becomes
//   A' = (hi p1 ^ c1 ^ k0, lo p1) = swap32(p1) ^ (A >> 32) ^ (k0, 0)
//   B' = (hi p0 ^ c3 ^ k1, lo p0) = swap32(p0) ^ (B >> 32) ^ (k1, 0).
// (Measured on Zen 4: 0.53 ns per word, against 0.58 for eight blocks per four registers
// with vpmulld for the low halves, and 1.3-1.9 for the auto-vectorized lane arrays.)
template <int G>
GW_TARGET_AVX2 inline void philox_groups_avx2(std::uint64_t b, __m256i st, std::uint32_t k0,
                                              std::uint32_t k1, std::uint16_t* r) {
  const __m256i m0 = _mm256_set1_epi64x(0xD2511F53), m1 = _mm256_set1_epi64x(0xCD9E8D57);
  __m256i a[G], c[G];
  for (int i = 0; i < G; ++i) {
    const long long bi = static_cast<long long>(b + 4u * static_cast<unsigned>(i));
    a[i] = _mm256_add_epi64(_mm256_set1_epi64x(bi), _mm256_setr_epi64x(0, 1, 2, 3));
    c[i] = st;
  }
#pragma GCC unroll 10
  for (int round = 0; round < 10; ++round) {
    const __m256i ka = _mm256_set1_epi64x(static_cast<long long>(k0));
    const __m256i kb = _mm256_set1_epi64x(static_cast<long long>(k1));
    for (int i = 0; i < G; ++i) {
      const __m256i p0 = _mm256_mul_epu32(a[i], m0);
      const __m256i p1 = _mm256_mul_epu32(c[i], m1);
      a[i] = _mm256_xor_si256(_mm256_xor_si256(_mm256_shuffle_epi32(p1, 0xB1), _mm256_srli_epi64(a[i], 32)), ka);
      c[i] = _mm256_xor_si256(_mm256_xor_si256(_mm256_shuffle_epi32(p0, 0xB1), _mm256_srli_epi64(c[i], 32)), kb);
    }
    k0 += math::kPhiloxW0;
    k1 += math::kPhiloxW1;
  }
  for (int i = 0; i < G; ++i) {  // block j's words c0 c1 c2 c3 = A_j then B_j
    const __m256i lo = _mm256_unpacklo_epi64(a[i], c[i]);  // blocks 0, 2
    const __m256i hi = _mm256_unpackhi_epi64(a[i], c[i]);  // blocks 1, 3
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(r + 32 * i), _mm256_permute2x128_si256(lo, hi, 0x20));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(r + 32 * i + 16), _mm256_permute2x128_si256(lo, hi, 0x31));
  }
}

// Writes whole groups of 4 blocks (up to 3 blocks past nb: kRandBits has room).
GW_TARGET_AVX2 void fill_random_avx2(std::uint64_t seed, std::uint64_t step, std::uint64_t g0,
                                     std::uint32_t n, std::uint16_t* r) {
  const std::uint64_t b0 = g0 >> 3;
  const std::uint32_t nb = random_blocks(g0, n);
  const std::uint32_t k0 = math::philox_key0(seed, math::Stream::Rounding), k1 = math::philox_key1(seed);
  const __m256i st = _mm256_set1_epi64x(static_cast<long long>(step));
  std::uint32_t j = 0;
  for (; j + 16 <= nb; j += 16) philox_groups_avx2<4>(b0 + j, st, k0, k1, r + 8 * j);
  for (; j < nb; j += 4) philox_groups_avx2<1>(b0 + j, st, k0, k1, r + 8 * j);
}

// The same with AVX-512F: eight blocks per register pair, and three instructions per half
// round instead of four: the xors go into the high dwords only (a ternary logic op masked to
// them: high = hi p ^ c_odd ^ k, low keeps lo p), and one dword swap then gives
//   A' = swap32(p1 ^ (A & high) ^ (0, k0)) = (hi p1 ^ c1 ^ k0, lo p1),
// the same A' as the AVX2 form without its shift. (Zen 4, 16 bits per element: see
// bench/results/sr-encode.md.) The zero-masking shuffle with all lanes on is the plain
// instruction; it sidesteps GCC 12's false -Wuninitialized on the unmasked intrinsic's
// _mm512_undefined_epi32 (GCC PR 105593).
template <int G>
GW_TARGET_AVX512 inline void philox_groups_avx512(std::uint64_t b, std::uint64_t step,
                                                  std::uint32_t k0, std::uint32_t k1,
                                                  std::uint16_t* r) {
  const __m512i m0 = _mm512_set1_epi64(0xD2511F53), m1 = _mm512_set1_epi64(0xCD9E8D57);
  __m512i a[G], c[G];
  for (int i = 0; i < G; ++i) {
    const long long bi = static_cast<long long>(b + 8u * static_cast<unsigned>(i));
    a[i] = _mm512_add_epi64(_mm512_set1_epi64(bi), _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7));
    c[i] = _mm512_set1_epi64(static_cast<long long>(step));
  }
#pragma GCC unroll 10
  for (int round = 0; round < 10; ++round) {
    const __m512i ka = _mm512_set1_epi64(static_cast<long long>(std::uint64_t{k0} << 32));
    const __m512i kb = _mm512_set1_epi64(static_cast<long long>(std::uint64_t{k1} << 32));
    for (int i = 0; i < G; ++i) {
      constexpr __mmask8 kAll8 = 0xff;
      constexpr __mmask16 kAll16 = 0xffff, kHigh = 0xaaaa;
      const __m512i p0 = _mm512_maskz_mul_epu32(kAll8, a[i], m0);
      const __m512i p1 = _mm512_maskz_mul_epu32(kAll8, c[i], m1);
      a[i] = _mm512_maskz_shuffle_epi32(kAll16, _mm512_mask_ternarylogic_epi32(p1, kHigh, a[i], ka, 0x96),
                                        static_cast<_MM_PERM_ENUM>(0xB1));
      c[i] = _mm512_maskz_shuffle_epi32(kAll16, _mm512_mask_ternarylogic_epi32(p0, kHigh, c[i], kb, 0x96),
                                        static_cast<_MM_PERM_ENUM>(0xB1));
    }
    k0 += math::kPhiloxW0;
    k1 += math::kPhiloxW1;
  }
  const __m512i first = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11);  // blocks 0-3: A_j, B_j
  const __m512i second = _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15);
  for (int i = 0; i < G; ++i) {
    _mm512_storeu_si512(r + 64 * i, _mm512_permutex2var_epi64(a[i], first, c[i]));
    _mm512_storeu_si512(r + 64 * i + 32, _mm512_permutex2var_epi64(a[i], second, c[i]));
  }
}

// Writes whole groups of 8 blocks (up to 7 blocks past nb: kRandBits has room).
GW_TARGET_AVX512 void fill_random_avx512(std::uint64_t seed, std::uint64_t step, std::uint64_t g0,
                                         std::uint32_t n, std::uint16_t* r) {
  const std::uint64_t b0 = g0 >> 3;
  const std::uint32_t nb = random_blocks(g0, n);
  const std::uint32_t k0 = math::philox_key0(seed, math::Stream::Rounding), k1 = math::philox_key1(seed);
  std::uint32_t j = 0;
  for (; j + 32 <= nb; j += 32) philox_groups_avx512<4>(b0 + j, step, k0, k1, r + 8 * j);
  for (; j < nb; j += 8) philox_groups_avx512<1>(b0 + j, step, k0, k1, r + 8 * j);
}
#endif

void fill_random(KernelLevel level, std::uint64_t seed, std::uint64_t step, std::uint64_t g0,
                 std::uint32_t n, std::uint16_t* r) {
#if GW_HAVE_AVX2_KERNELS
  if (level >= KernelLevel::Avx512) return fill_random_avx512(seed, step, g0, n, r);
  if (level >= KernelLevel::Avx2) return fill_random_avx2(seed, step, g0, n, r);
#endif
  (void)level;
  fill_random_generic(seed, step, g0, n, r);
}

// The range of a bucket of float32 values v = x (+ e): the bits math::bucket_stats gives
// (min/max are exact in any order; the |v| sum keeps its 8 lanes, lane j folding elements
// j, j+8, ..., and its combination order), written on 8-lane vectors so that it compiles to
// packed min/max on any x86 level.
typedef float F8 __attribute__((vector_size(32)));
typedef std::uint32_t U8 __attribute__((vector_size(32)));

template <bool kEF>
[[gnu::always_inline]] inline math::BucketStats range_body(const float* __restrict x,
                                                           const float* __restrict e,
                                                           std::uint32_t n) {
  F8 lo8, hi8, s8 = {};
  U8 am8 = {};
  for (int j = 0; j < 8; ++j) {
    lo8[j] = 3.4028234663852886e38f;
    hi8[j] = -3.4028234663852886e38f;
  }
  std::uint32_t i = 0;
  for (; i + 8 <= n; i += 8) {
    F8 v;
    std::memcpy(&v, x + i, sizeof v);
    if constexpr (kEF) {
      F8 ev;
      std::memcpy(&ev, e + i, sizeof ev);
      v += ev;
    }
    lo8 = v < lo8 ? v : lo8;
    hi8 = v > hi8 ? v : hi8;
    const U8 a = (U8)v & 0x7fffffffu;  // vector casts reinterpret the bits
    am8 = a > am8 ? a : am8;
    s8 += (F8)a;
  }
  float lo[8], hi[8], s[8];
  std::uint32_t am[8];
  std::memcpy(lo, &lo8, sizeof lo);
  std::memcpy(hi, &hi8, sizeof hi);
  std::memcpy(s, &s8, sizeof s);
  std::memcpy(am, &am8, sizeof am);
  for (int j = 0; i + j < n; ++j) {
    float v = x[i + j];
    if constexpr (kEF) v += e[i + j];
    lo[j] = v < lo[j] ? v : lo[j];
    hi[j] = v > hi[j] ? v : hi[j];
    const std::uint32_t a = math::abs_bits(v);
    am[j] = a > am[j] ? a : am[j];
    s[j] += math::bits_float(a);
  }
  math::BucketStats r{lo[0], hi[0], am[0], 0.0f};
  for (int j = 1; j < 8; ++j) {
    r.lo = lo[j] < r.lo ? lo[j] : r.lo;
    r.hi = hi[j] > r.hi ? hi[j] : r.hi;
    r.amax = am[j] > r.amax ? am[j] : r.amax;
  }
  r.lo += 0.0f;
  r.hi += 0.0f;
  r.abs_sum = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
  return r;
}

template <bool kEF>
math::BucketStats range_generic(const float* x, const float* e, std::uint32_t n) {
  return range_body<kEF>(x, e, n);
}
template <bool kEF>
GW_TARGET_AVX2 math::BucketStats range_avx2(const float* x, const float* e, std::uint32_t n) {
  return range_body<kEF>(x, e, n);
}

template <bool kEF>
math::BucketStats float_range(bool avx2, const float* x, const float* e, std::uint32_t n) {
  return avx2 ? range_avx2<kEF>(x, e, n) : range_generic<kEF>(x, e, n);
}

// One chunk of codes: round v onto the grid (stochastic with words r, or nearest), store
// the residual v - decode (error feedback), pack. Plain loops over arrays that the
// vectorizer takes whole (the clamp and the rounding compile to packed max/min/compare).
// Element i's code on the bucket's grid; r (random words) is read only when rounding
// stochastically, and may be null otherwise.
template <bool kStoch>
[[gnu::always_inline]] inline std::uint32_t grid_code(const float* v, const std::uint16_t* r,
                                                      std::uint32_t i, math::Grid g, float lf) {
  const float t = math::grid_position(v[i], g, lf);
  if constexpr (kStoch) {
    return math::round_stochastic(t, r[i]);
  } else {
    return math::round_nearest(t);
  }
}

template <std::uint32_t B, bool kStoch, bool kEF>
[[gnu::always_inline]] inline void chunk_body(const float* __restrict v,
                                              const std::uint16_t* __restrict r, std::uint32_t m,
                                              math::Grid g, float lf, float* __restrict res,
                                              std::byte* __restrict out) {
  std::uint8_t q[kChunk];
  for (std::uint32_t i = 0; i < m; ++i) {
    q[i] = static_cast<std::uint8_t>(grid_code<kStoch>(v, r, i, g, lf));
  }
  if constexpr (kEF) {
    for (std::uint32_t i = 0; i < m; ++i) res[i] = v[i] - math::dequantize(q[i], g);
  }
  pack_codes<B>(q, m, out);
}

template <std::uint32_t B, bool kStoch, bool kEF>
void chunk_generic(const float* v, const std::uint16_t* r, std::uint32_t m, math::Grid g, float lf,
                   float* res, std::byte* out) {
  chunk_body<B, kStoch, kEF>(v, r, m, g, lf, res, out);
}
#if GW_HAVE_AVX2_KERNELS
// The same chunk with AVX2 intrinsics, 8 elements per register: the clamp is max/min (whose
// operand order gives exactly grid_position's selects, NaN -> 0), floor is a truncating
// conversion (t >= 0), stochastic rounding the integer form of math::round_stochastic
// (2^17 t is exact, so its truncation is floor(2^17 t)). Codes (0..255) narrow with
// unsigned saturating packs, which never saturate here.
template <bool kStoch, bool kEF>
GW_TARGET_AVX2 inline __m256i codes8_avx2(const float* v, const std::uint16_t* r, __m256 lo,
                                          __m256 inv, __m256 lf, __m256 step, float* res) {
  const __m256 x = _mm256_loadu_ps(v);
  __m256 t = _mm256_mul_ps(_mm256_sub_ps(x, lo), inv);
  t = _mm256_max_ps(t, _mm256_setzero_ps());  // t > 0 ? t : 0
  t = _mm256_min_ps(t, lf);                   // t < L ? t : L
  __m256i q;
  if constexpr (kStoch) {
    // math::round_stochastic in integers: (floor(2^17 t) + 2r + 1) >> 17 (t <= 255 here).
    const __m256i t17 = _mm256_cvttps_epi32(_mm256_mul_ps(t, _mm256_set1_ps(131072.0f)));
    const __m256i r16 = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r)));
    const __m256i r2 = _mm256_or_si256(_mm256_slli_epi32(r16, 1), _mm256_set1_epi32(1));
    q = _mm256_srli_epi32(_mm256_add_epi32(t17, r2), 17);
  } else {
    q = _mm256_cvttps_epi32(_mm256_add_ps(t, _mm256_set1_ps(0.5f)));
  }
  if constexpr (kEF) {  // v - (lo + q * step), as math::dequantize (no contraction)
    _mm256_storeu_ps(res, _mm256_sub_ps(x, _mm256_add_ps(lo, _mm256_mul_ps(_mm256_cvtepi32_ps(q), step))));
  }
  return q;
}

template <std::uint32_t B, bool kStoch, bool kEF>
GW_TARGET_AVX2 void chunk_avx2(const float* v, const std::uint16_t* r, std::uint32_t m, math::Grid g,
                               float lf, float* res, std::byte* out) {
  alignas(32) std::uint8_t q[kChunk];
  std::uint8_t* qb = B == 8 ? reinterpret_cast<std::uint8_t*>(out) : q;
  const __m256 lo = _mm256_set1_ps(g.lo), inv = _mm256_set1_ps(g.inv), lv = _mm256_set1_ps(lf);
  const __m256 st = _mm256_set1_ps(g.step);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  std::uint32_t i = 0;
  for (; i + 32 <= m; i += 32) {
    __m256i c[4];
    for (std::uint32_t k = 0; k < 4; ++k) {
      c[k] = codes8_avx2<kStoch, kEF>(v + i + 8 * k, r + i + 8 * k, lo, inv, lv, st,
                                      kEF ? res + i + 8 * k : nullptr);
    }
    const __m256i bytes = _mm256_packus_epi16(_mm256_packus_epi32(c[0], c[1]), _mm256_packus_epi32(c[2], c[3]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(qb + i), _mm256_permutevar8x32_epi32(bytes, order));
  }
  for (; i < m; ++i) {
    const std::uint32_t code = grid_code<kStoch>(v, r, i, g, lf);
    qb[i] = static_cast<std::uint8_t>(code);
    if constexpr (kEF) res[i] = v[i] - math::dequantize(code, g);
  }
  if constexpr (B != 8) pack_codes<B>(q, m, out);
}

// GCC 12 warns that the unmasked AVX-512 intrinsics read _mm512_undefined (a false positive,
// GCC PR 105593); the Philox above uses the all-lanes masked forms instead, these have none.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#if !defined(__clang__)  // GCC's name; clang (the fuzz build) has no such group
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

// The same chunk with AVX-512F, 16 elements per register (same operations, same bits:
// max/min have the AVX2 forms' operand semantics); codes narrow with vpmovdb.
template <bool kStoch, bool kEF>
GW_TARGET_AVX512 inline __m512i codes16_avx512(const float* v, const std::uint16_t* r, __m512 lo,
                                               __m512 inv, __m512 lf, __m512 step, float* res) {
  const __m512 x = _mm512_loadu_ps(v);
  __m512 t = _mm512_mul_ps(_mm512_sub_ps(x, lo), inv);
  t = _mm512_max_ps(t, _mm512_setzero_ps());  // t > 0 ? t : 0
  t = _mm512_min_ps(t, lf);                   // t < L ? t : L
  __m512i q;
  if constexpr (kStoch) {
    const __m512i t17 = _mm512_cvttps_epi32(_mm512_mul_ps(t, _mm512_set1_ps(131072.0f)));
    const __m512i r16 = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(r)));
    const __m512i r2 = _mm512_or_si512(_mm512_slli_epi32(r16, 1), _mm512_set1_epi32(1));
    q = _mm512_srli_epi32(_mm512_add_epi32(t17, r2), 17);
  } else {
    q = _mm512_cvttps_epi32(_mm512_add_ps(t, _mm512_set1_ps(0.5f)));
  }
  if constexpr (kEF) {
    _mm512_storeu_ps(res, _mm512_sub_ps(x, _mm512_add_ps(lo, _mm512_mul_ps(_mm512_cvtepi32_ps(q), step))));
  }
  return q;
}

// Sixteen codes (lane j < 2^B) packed as pack_codes<B> does, 2B bytes at out. In a 64-bit
// lane (even code low, odd code high), lane | lane >> (32 - B) puts odd << B beside even in the
// low byte; narrowing moves then collect the low bytes (B = 2 pairs twice); B = 1 is the
// nonzero mask itself.
template <std::uint32_t B>
GW_TARGET_AVX512 inline void store_codes16(__m512i c, std::byte* out) {
  if constexpr (B == 8) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm512_cvtepi32_epi8(c));
  } else if constexpr (B == 4) {
    const __m512i y = _mm512_or_si512(c, _mm512_srli_epi64(c, 28));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(out), _mm512_cvtepi64_epi8(y));
  } else if constexpr (B == 2) {
    const __m256i y = _mm512_cvtepi64_epi32(_mm512_or_si512(c, _mm512_srli_epi64(c, 30)));
    const __m256i z = _mm256_or_si256(y, _mm256_srli_epi64(y, 28));
    const int bytes = _mm_cvtsi128_si32(_mm256_cvtepi64_epi8(z));
    std::memcpy(out, &bytes, 4);
  } else {
    const std::uint16_t bits = static_cast<std::uint16_t>(_mm512_test_epi32_mask(c, c));
    std::memcpy(out, &bits, 2);
  }
}

template <std::uint32_t B, bool kStoch, bool kEF>
GW_TARGET_AVX512 void chunk_avx512(const float* v, const std::uint16_t* r, std::uint32_t m,
                                   math::Grid g, float lf, float* res, std::byte* out) {
  const __m512 lo = _mm512_set1_ps(g.lo), inv = _mm512_set1_ps(g.inv), lv = _mm512_set1_ps(lf);
  const __m512 st = _mm512_set1_ps(g.step);
  std::uint32_t i = 0;
  for (; i + 16 <= m; i += 16) {
    const __m512i c = codes16_avx512<kStoch, kEF>(v + i, r + i, lo, inv, lv, st, kEF ? res + i : nullptr);
    store_codes16<B>(c, out + i * B / 8);
  }
  if (i == m) return;
  std::uint8_t q[16];  // the tail (the slice's last bucket): i is a multiple of 16, byte aligned
  for (std::uint32_t j = 0; i + j < m; ++j) {
    const std::uint32_t code = grid_code<kStoch>(v, r, i + j, g, lf);
    q[j] = static_cast<std::uint8_t>(code);
    if constexpr (kEF) res[i + j] = v[i + j] - math::dequantize(code, g);
  }
  pack_codes<B>(q, m - i, out + i * B / 8);
}

// A quantizer's bucket range with AVX-512F: min, max and the max |v| bits (what a grid and
// the finiteness check need; not sign's |v| sum, whose lane order is fixed at 8). min/max are
// exact in any order and lanes, so the bits are math::bucket_stats' lo, hi, amax.
template <bool kEF>
GW_TARGET_AVX512 math::BucketStats range_avx512(const float* x, const float* e, std::uint32_t n) {
  __m512 lo = _mm512_set1_ps(3.4028234663852886e38f), hi = _mm512_set1_ps(-3.4028234663852886e38f);
  __m512i am = _mm512_setzero_si512();
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff);
  std::uint32_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 v = _mm512_loadu_ps(x + i);
    if constexpr (kEF) v = _mm512_add_ps(v, _mm512_loadu_ps(e + i));
    lo = _mm512_min_ps(v, lo);  // v < lo ? v : lo (NaN v keeps lo)
    hi = _mm512_max_ps(v, hi);
    am = _mm512_max_epu32(am, _mm512_and_si512(_mm512_castps_si512(v), abs_mask));
  }
  math::BucketStats r{_mm512_reduce_min_ps(lo), _mm512_reduce_max_ps(hi), _mm512_reduce_max_epu32(am), 0.0f};
  for (; i < n; ++i) {
    float v = x[i];
    if constexpr (kEF) v += e[i];
    r.lo = v < r.lo ? v : r.lo;
    r.hi = v > r.hi ? v : r.hi;
    const std::uint32_t a = math::abs_bits(v);
    r.amax = a > r.amax ? a : r.amax;
  }
  r.lo += 0.0f;  // -0 -> +0, as math::bucket_stats
  r.hi += 0.0f;
  return r;
}
#pragma GCC diagnostic pop
#endif

// Software prefetch of the input (and residual) kPrefetch elements past the bucket that is
// about to be read, so the memory reads of later buckets overlap this bucket's arithmetic
// (Philox, rounding) instead of stalling the range pass. Hints only: never fault.
constexpr std::size_t kPrefetch = 8192;

template <bool kEF>
void prefetch_ahead(const float* x, const float* e, std::size_t s, std::uint32_t n,
                    std::size_t count) {
  const std::size_t from = s + kPrefetch;
  if (from >= count) return;
  const std::size_t to = from + n < count ? from + n : count;
  for (std::size_t i = from; i < to; i += 16) {
    __builtin_prefetch(x + i);
    if constexpr (kEF) __builtin_prefetch(e + i, 1);
  }
}

template <std::uint32_t B, bool kStoch, bool kEF, class T>
void quantize_slice(const CodecSpec& spec, const EncodeArgs& a, std::byte* scales,
                    std::byte* payload) {
  constexpr bool kF32 = std::is_same_v<T, float>;
  const Source<T, kEF> src{static_cast<const T*>(a.in), a.residual};
  const std::uint32_t levels = math::levels_of(B);
  const float lf = static_cast<float>(levels);
  const bool absmax = spec.scale == ScaleMode::AbsMax;
  const KernelLevel level = kernel_level();
  const bool avx2 = level >= KernelLevel::Avx2, avx512 = level >= KernelLevel::Avx512;
  alignas(64) std::uint16_t r[kRandBits];
  alignas(32) float vb[kChunk];
  std::size_t b = 0;
  for (std::size_t s = 0; s < a.count; s += spec.bucket, ++b) {
    const std::uint32_t n =
        static_cast<std::uint32_t>(a.count - s < spec.bucket ? a.count - s : spec.bucket);
    // The bucket's random bits first (buckets up to kRandSpan; larger ones per chunk), so
    // that the range pass runs while their stores drain: read back at once, the wide stores
    // stall the narrow loads of the rounding loop (store-to-load forwarding).
    if (kStoch && n <= kRandSpan) fill_random(level, a.seed, a.step, a.global_offset + s, n, r);
    math::BucketStats st;
    if constexpr (kF32) {
      prefetch_ahead<kEF>(src.x, a.residual, s, n, a.count);
#if GW_HAVE_AVX2_KERNELS
      if (avx512) {
        st = range_avx512<kEF>(src.x + s, kEF ? a.residual + s : nullptr, n);
      } else
#endif
        st = float_range<kEF>(avx2, src.x + s, kEF ? a.residual + s : nullptr, n);
    } else {
      st = math::bucket_stats([&](std::uint32_t i) { return src(s + i); }, n);
    }
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
      const std::uint16_t* bits = r + ((a.global_offset + s) & 7u) + c;  // drawn per bucket
      if (kStoch && n > kRandSpan) {
        fill_random(level, a.seed, a.step, g0, m, r);
        bits = r + (g0 & 7u);
      }
      const float* v = vb;
      if constexpr (kF32 && !kEF) {
        v = src.x + base;
      } else {
        for (std::uint32_t i = 0; i < m; ++i) vb[i] = src(base + i);
      }
      float* res = kEF ? a.residual + base : nullptr;
      std::byte* out = payload + base * B / 8;
#if GW_HAVE_AVX2_KERNELS
      if (avx512) {
        chunk_avx512<B, kStoch, kEF>(v, bits, m, g, lf, res, out);
        continue;
      }
      if (avx2) {
        chunk_avx2<B, kStoch, kEF>(v, bits, m, g, lf, res, out);
        continue;
      }
#endif
      chunk_generic<B, kStoch, kEF>(v, bits, m, g, lf, res, out);
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
  const bool avx2 = use_avx2();
  std::uint8_t q[kChunk];
  std::size_t b = 0;
  for (std::size_t s = 0; s < a.count; s += spec.bucket, ++b) {
    const std::uint32_t n =
        static_cast<std::uint32_t>(a.count - s < spec.bucket ? a.count - s : spec.bucket);
    math::BucketStats st;
    if constexpr (std::is_same_v<T, float>) {
      st = float_range<kEF>(avx2, src.x + s, kEF ? a.residual + s : nullptr, n);
    } else {
      st = math::bucket_stats([&](std::uint32_t i) { return src(s + i); }, n);
    }
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

// Sign with outliers (docs/codecs.md, "Sign and momentum"): per bucket, the `outliers`
// largest |v| (ties: the lower index) travel exactly after the bit payload, as (u32 index
// in the bucket, f32 value) sorted by index; the scale is the mean |v| of the others. Why:
// with one scale per bucket the largest elements can move by only the mean per step, so
// error feedback piles their mass into the residual (a wind-up) that heavy-ball momentum
// turns into a growing oscillation.
std::uint64_t sign_outlier_count(const CodecSpec& s, std::uint64_t count) {
  if (s.outliers == 0) return 0;
  const std::uint64_t rest = count % s.bucket;
  return count / s.bucket * s.outliers + (rest < s.outliers ? rest : s.outliers);
}

template <bool kEF, class T>
void sign_outliers_slice(const CodecSpec& spec, const EncodeArgs& a, std::byte* scales,
                         std::byte* payload, std::byte* records) {
  const Source<T, kEF> src{static_cast<const T*>(a.in), a.residual};
  thread_local std::vector<float> v, mag;
  thread_local std::vector<std::uint32_t> order;
  std::uint8_t q[kChunk];
  std::size_t b = 0;
  for (std::size_t s = 0; s < a.count; s += spec.bucket, ++b) {
    const std::uint32_t n =
        static_cast<std::uint32_t>(a.count - s < spec.bucket ? a.count - s : spec.bucket);
    const std::uint32_t k = n < spec.outliers ? n : spec.outliers;
    v.resize(n);
    mag.resize(n);
    order.resize(k);
    // thread_local: one lookup per bucket, not per element
    float* const vp = v.data();
    float* const mp = mag.data();
    std::uint32_t* const op = order.data();
    bool finite = true;
    for (std::uint32_t i = 0; i < n; ++i) {
      vp[i] = src(s + i);
      finite = finite && std::isfinite(vp[i]);
    }
    if (!finite) check_finite(src, s, n, a.global_offset);
    // The k-th largest magnitude t; the outliers are the elements above t, then those equal
    // to t in index order: a total order, so the choice does not depend on the selection.
    float t = 0.0f;
    std::uint32_t above = 0;
    if (k > 0) {
      for (std::uint32_t i = 0; i < n; ++i) mp[i] = std::fabs(vp[i]);
      std::nth_element(mp, mp + (k - 1), mp + n, std::greater<float>());
      t = mp[k - 1];
      for (std::uint32_t i = 0; i < n; ++i) above += std::fabs(vp[i]) > t ? 1u : 0u;
    }
    double sum = 0;  // index order: reproducible
    for (std::uint32_t i = 0, j = 0, ties = k - above; i < n; ++i) {
      const float m = std::fabs(vp[i]);
      if (j < k && (m > t || (m == t && ties > 0))) {
        if (!(m > t)) --ties;
        op[j++] = i;
        continue;
      }
      sum += static_cast<double>(m);
    }
    const float scale = n > k ? static_cast<float>(sum / static_cast<double>(n - k)) : 0.0f;
    if (!std::isfinite(scale)) {
      throw Error(ErrorCode::InvalidArgument, "bucket at slice element " + std::to_string(s) +
                                                  ": sum of |x| overflows float");
    }
    store_f32(scales + 4 * b, scale);
    for (std::uint32_t j = 0; j < k; ++j) {
      wire::store_u32(records, op[j]);
      store_f32(records + 4, vp[op[j]]);
      records += 8;
    }
    for (std::uint32_t c = 0, j = 0; c < n; c += kChunk) {
      const std::uint32_t m = n - c < kChunk ? n - c : kChunk;
      for (std::uint32_t i = 0; i < m; ++i) {
        const std::uint32_t bit = math::sign_bit(vp[c + i]);
        q[i] = static_cast<std::uint8_t>(bit);
        if constexpr (kEF) {
          const bool exact = j < k && op[j] == c + i;
          j += exact ? 1 : 0;
          a.residual[s + c + i] = exact ? 0.0f : vp[c + i] - math::sign_value(bit, scale);
        }
      }
      pack_codes<1>(q, m, payload + (s + c) / 8);
    }
  }
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

// Outlier records: indices inside their bucket, increasing, values finite. Checked before
// anything is written.
void validate_outliers(const CodecSpec& s, const std::byte* records, std::size_t count) {
  std::size_t b = 0;
  for (std::size_t st = 0; st < count; st += s.bucket, ++b) {
    const std::uint32_t n = static_cast<std::uint32_t>(count - st < s.bucket ? count - st : s.bucket);
    const std::uint32_t k = n < s.outliers ? n : s.outliers;
    for (std::uint32_t j = 0; j < k; ++j, records += 8) {
      const std::uint32_t i = wire::load_u32(records);
      const float x = load_f32(records + 4);
      if (i >= n || (j > 0 && i <= wire::load_u32(records - 8)))
        bad_scale(b, "an outlier index out of order or range:", static_cast<float>(i));
      if (!std::isfinite(x)) bad_scale(b, "a non-finite outlier", x);
    }
  }
}

template <bool kAdd, class T>
void unsign_outliers_slice(const CodecSpec& spec, const std::byte* scales,
                           const std::byte* payload, const std::byte* records,
                           std::size_t count, T* out) {
  std::uint8_t q[kChunk];
  std::size_t b = 0;
  for (std::size_t s = 0; s < count; s += spec.bucket, ++b) {
    const std::uint32_t n =
        static_cast<std::uint32_t>(count - s < spec.bucket ? count - s : spec.bucket);
    const std::uint32_t k = n < spec.outliers ? n : spec.outliers;
    const float scale = load_f32(scales + 4 * b);
    std::uint32_t j = 0, next = k ? wire::load_u32(records) : n;  // the next outlier's index
    for (std::uint32_t c = 0; c < n; c += kChunk) {
      const std::uint32_t m = n - c < kChunk ? n - c : kChunk;
      unpack_codes<1>(payload + (s + c) / 8, m, q);
      if constexpr (!kAdd) {  // sign values, then the outliers over them
        write_values<T, false>(out, s + c, m, q,
                               [scale](std::uint32_t bit) { return math::sign_value(bit, scale); });
      }
      for (std::uint32_t i = 0; i < m; ++i) {
        const bool outlier = c + i == next;
        if constexpr (kAdd) {
          out[s + c + i] += outlier ? load_f32(records + 8 * j + 4) : math::sign_value(q[i], scale);
        } else if (outlier) {
          store_elem(out, s + c + i, load_f32(records + 8 * j + 4));
        }
        if (outlier) next = ++j < k ? wire::load_u32(records + 8 * j) : n;
      }
    }
    records += 8 * k;
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
    case CodecKind::Sign:
      return 4 * scale_floats(s, count) + (count * s.bits + 7) / 8 + 8 * sign_outlier_count(s, count);
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
    if (s.outliers) {
      std::byte* records = payload + (a.count + 7) / 8;
      a.residual ? sign_outliers_slice<true, T>(s, a, scales, payload, records)
                 : sign_outliers_slice<false, T>(s, a, scales, payload, records);
      return;
    }
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
  const std::byte* records = payload + (count + 7) / 8;
  if (s.outliers) validate_outliers(s, records, count);
  with_out(t, [&](auto* out, auto add) {
    using T = std::remove_pointer_t<decltype(out)>;
    if (s.outliers) {
      unsign_outliers_slice<decltype(add)::value, T>(s, body, payload, records, count, out);
    } else {
      unsign_slice<decltype(add)::value, T>(s, body, payload, count, out);
    }
  });
}

static_assert(kRoundingChunk <= kRandSpan && kRoundingBits >= kRoundingChunk + 64);

void rounding_bits(std::uint64_t seed, std::uint64_t step, std::uint64_t g0, std::uint32_t n,
                   std::uint16_t* r) {
  fill_random(kernel_level(), seed, step, g0, n, r);
}

}  // namespace gradwire::detail
