// Index selection of the sparsifiers: top-k in O(n) and random-k from the Philox stream.
#include <algorithm>
#include <cmath>

#include "codec/detail.hpp"
#include "codec/isa.hpp"
#include "math/philox.hpp"
#include "math/quant.hpp"

#if GW_HAVE_AVX2_KERNELS
#include <immintrin.h>
#endif

namespace gradwire::detail {

namespace {

// From candidates (ascending index, a superset of the answer), keep the first k in the
// strict total order of top-k (larger magnitude first, then lower index), preserving index
// order. That set is every candidate whose key exceeds K, the k-th largest key, plus the
// lowest-index candidates whose key equals K, as many as are still missing: so one
// selection over the bare 32-bit keys (no tie-breaking comparator), then two linear passes.
void finish(const float* v, const std::vector<std::uint32_t>& cand, std::size_t k,
            std::vector<std::uint32_t>& idx) {
  const std::size_t m = cand.size();
  std::vector<std::uint32_t> key(m);
  for (std::size_t i = 0; i < m; ++i) key[i] = math::abs_bits(v[cand[i]]);
  std::vector<std::uint32_t> sel(key);
  std::nth_element(sel.begin(), sel.begin() + static_cast<std::ptrdiff_t>(k - 1), sel.end(),
                   [](std::uint32_t a, std::uint32_t b) { return a > b; });
  const std::uint32_t kth = sel[k - 1];
  std::size_t above = 0;
  for (std::size_t i = 0; i < m; ++i) above += key[i] > kth ? 1u : 0u;
  std::size_t ties = k - above;  // >= 1
  idx.clear();
  idx.reserve(k);
  for (std::size_t i = 0; i < m; ++i) {
    if (key[i] > kth) {
      idx.push_back(cand[i]);
    } else if (key[i] == kth && ties > 0) {
      idx.push_back(cand[i]);
      --ties;
    }
  }
}

// Appends to cand the positions i in [i0, n) with abs_bits(v[i]) >= t, ascending.
void collect_generic(const float* v, std::size_t i0, std::size_t n, std::uint32_t t,
                     std::vector<std::uint32_t>& cand) {
  for (std::size_t i = i0; i < n; ++i) {
    if (math::abs_bits(v[i]) >= t) cand.push_back(static_cast<std::uint32_t>(i));
  }
}

#if GW_HAVE_AVX2_KERNELS
// The same with AVX2: eight magnitudes compared per instruction (as signed integers: both
// sides are below 2^31), and only the rare groups with a hit looked at one by one.
GW_TARGET_AVX2 void collect_avx2(const float* v, std::size_t n, std::uint32_t t,
                                 std::vector<std::uint32_t>& cand) {
  const __m256i mag = _mm256_set1_epi32(0x7fffffff);
  const __m256i below = _mm256_set1_epi32(static_cast<int>(t - 1u));  // t >= 1
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i a0 = _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(v + i)), mag);
    const __m256i a1 = _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(v + i + 8)), mag);
    const __m256i any = _mm256_cmpgt_epi32(_mm256_max_epi32(a0, a1), below);
    if (_mm256_testz_si256(any, any)) continue;
    const __m256i h0 = _mm256_cmpgt_epi32(a0, below), h1 = _mm256_cmpgt_epi32(a1, below);
    unsigned m = static_cast<unsigned>(_mm256_movemask_ps(_mm256_castsi256_ps(h0))) |
                 static_cast<unsigned>(_mm256_movemask_ps(_mm256_castsi256_ps(h1))) << 8;
    while (m != 0) {
      cand.push_back(static_cast<std::uint32_t>(i + static_cast<std::size_t>(__builtin_ctz(m))));
      m &= m - 1u;
    }
  }
  collect_generic(v, i, n, t, cand);
}
#endif

}  // namespace

void select_topk(const float* v, std::size_t n, std::size_t k, std::vector<std::uint32_t>& idx) {
  idx.clear();
  if (k == 0) return;
  std::vector<std::uint32_t> cand;
  if (k >= n) {
    idx.resize(n);
    for (std::size_t i = 0; i < n; ++i) idx[i] = static_cast<std::uint32_t>(i);
    return;
  }
  // A threshold from a strided sample, set low enough that (with overwhelming probability)
  // at least k elements pass it; one pass collects them. A sample that guessed too high
  // costs a second, exact pass over all elements, never a wrong answer.
  std::uint32_t t = 0;
  std::size_t rank = 0;
  constexpr std::size_t kSamples = 8192;
  if (n >= 4 * kSamples) {
    const std::size_t stride = n / kSamples;
    std::vector<std::uint32_t> sample(kSamples);
    for (std::size_t j = 0; j < kSamples; ++j) sample[j] = math::abs_bits(v[j * stride]);
    const double expect = static_cast<double>(k) / static_cast<double>(n) * kSamples;
    rank =
        std::min<std::size_t>(kSamples - 1, static_cast<std::size_t>(expect + 4.0 * std::sqrt(expect) + 16.0));
    std::nth_element(sample.begin(), sample.begin() + static_cast<std::ptrdiff_t>(rank), sample.end(),
                     [](std::uint32_t a, std::uint32_t b) { return a > b; });
    t = sample[rank];
  }
  if (t != 0) {
    // Expected candidates: about n (rank + 1) / kSamples; room for a little more, so the
    // vector rarely grows (a growth copies every candidate found so far).
    cand.reserve(std::max<std::size_t>(k, n / kSamples * (rank + 1) + n / kSamples * (rank + 1) / 8 + 64));
#if GW_HAVE_AVX2_KERNELS
    if (use_avx2()) {
      collect_avx2(v, n, t, cand);
    } else {
      collect_generic(v, 0, n, t, cand);
    }
#else
    collect_generic(v, 0, n, t, cand);
#endif
  }
  if (cand.size() < k) {
    cand.resize(n);
    for (std::size_t i = 0; i < n; ++i) cand[i] = static_cast<std::uint32_t>(i);
  }
  finish(v, cand, k, idx);
}

std::uint32_t randk_param(double ratio) {
  const double p = std::ceil(ratio * 4294967296.0);
  if (!(p > 1.0)) return 0;  // ratio tiny (or NaN): probability 2^-32
  if (p >= 4294967296.0) return 0xffffffffu;
  return static_cast<std::uint32_t>(p) - 1u;
}

void randk_select(std::uint32_t param, std::uint64_t seed, std::uint64_t step,
                  std::uint64_t global_offset, std::size_t count, std::vector<std::uint32_t>& idx) {
  idx.clear();
  std::size_t i = 0;
  // Element-wise until the global index is a multiple of 4, then a Philox block per 4.
  for (; i < count && ((global_offset + i) & 3u) != 0; ++i) {
    if (math::philox_word(seed, step, math::Stream::RandK, global_offset + i) <= param) {
      idx.push_back(static_cast<std::uint32_t>(i));
    }
  }
  for (; i + 4 <= count; i += 4) {
    const math::U32x4 w = math::philox_block(seed, step, math::Stream::RandK, (global_offset + i) >> 2);
    for (std::uint32_t j = 0; j < 4; ++j) {
      if (w.v[j] <= param) idx.push_back(static_cast<std::uint32_t>(i + j));
    }
  }
  for (; i < count; ++i) {
    if (math::philox_word(seed, step, math::Stream::RandK, global_offset + i) <= param) {
      idx.push_back(static_cast<std::uint32_t>(i));
    }
  }
}

}  // namespace gradwire::detail
