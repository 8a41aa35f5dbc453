// Index selection of the sparsifiers: top-k in O(n) and random-k from the Philox stream.
#include <algorithm>
#include <cmath>

#include "codec/detail.hpp"
#include "math/philox.hpp"
#include "math/quant.hpp"

namespace gradwire::detail {

namespace {

// The strict total order of top-k: larger magnitude first, then lower index.
struct Entry {
  std::uint32_t key, idx;
};
bool before(const Entry& a, const Entry& b) {
  return a.key != b.key ? a.key > b.key : a.idx < b.idx;
}

// From candidates (ascending index, a superset of the answer), keep the first k by `before`,
// preserving index order.
void finish(const float* v, const std::vector<std::uint32_t>& cand, std::size_t k,
            std::vector<std::uint32_t>& idx) {
  std::vector<Entry> e(cand.size());
  for (std::size_t i = 0; i < cand.size(); ++i) e[i] = {math::abs_bits(v[cand[i]]), cand[i]};
  std::nth_element(e.begin(), e.begin() + static_cast<std::ptrdiff_t>(k - 1), e.end(), before);
  const Entry pivot = e[k - 1];
  idx.clear();
  idx.reserve(k);
  for (const std::uint32_t i : cand) {
    const Entry x{math::abs_bits(v[i]), i};
    if (!before(pivot, x)) idx.push_back(i);
  }
}

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
  constexpr std::size_t kSamples = 8192;
  if (n >= 4 * kSamples) {
    const std::size_t stride = n / kSamples;
    std::vector<std::uint32_t> sample(kSamples);
    for (std::size_t j = 0; j < kSamples; ++j) sample[j] = math::abs_bits(v[j * stride]);
    const double expect = static_cast<double>(k) / static_cast<double>(n) * kSamples;
    const std::size_t rank =
        std::min<std::size_t>(kSamples - 1, static_cast<std::size_t>(expect + 4.0 * std::sqrt(expect) + 16.0));
    std::nth_element(sample.begin(), sample.begin() + static_cast<std::ptrdiff_t>(rank), sample.end(),
                     [](std::uint32_t a, std::uint32_t b) { return a > b; });
    t = sample[rank];
  }
  if (t != 0) {
    cand.reserve(k + k / 2 + 64);
    for (std::size_t i = 0; i < n; ++i) {
      if (math::abs_bits(v[i]) >= t) cand.push_back(static_cast<std::uint32_t>(i));
    }
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
