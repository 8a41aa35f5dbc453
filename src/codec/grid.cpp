#include "codec/grid.hpp"

#include <cfloat>
#include <cmath>
#include <string>

#include "codec/rounding_words.hpp"
#include "gradwire/error.hpp"
#include "math/quant.hpp"

namespace gradwire::grid {

std::size_t bucket_count(std::size_t n, std::uint32_t bucket) {
  return bucket == 0 ? 0 : (n + bucket - 1) / bucket;
}

namespace {
void check_bucket(std::uint32_t bucket) {
  if (bucket == 0) throw Error(ErrorCode::InvalidArgument, "grid: bucket must be positive");
}
math::Grid grid_of(float lo, float hi, std::uint32_t levels) {
  if (!(static_cast<double>(hi) - static_cast<double>(lo) <= static_cast<double>(FLT_MAX))) {
    throw Error(ErrorCode::InvalidArgument, "grid: hi - lo must be a finite float >= 0");
  }
  return math::grid_minmax(lo, hi, levels);
}
}  // namespace

void bucket_minmax(const float* x, std::size_t n, std::uint32_t bucket, float* lo, float* hi) {
  check_bucket(bucket);
  for (std::size_t s = 0, b = 0; s < n; s += bucket, ++b) {
    const std::uint32_t m = static_cast<std::uint32_t>(n - s < bucket ? n - s : bucket);
    const math::BucketStats st = math::bucket_stats([&](std::uint32_t i) { return x[s + i]; }, m);
    if (st.amax >= math::kInfBits) {
      throw Error(ErrorCode::InvalidArgument, "grid: non-finite value in bucket " + std::to_string(b));
    }
    lo[b] = st.lo;
    hi[b] = st.hi;
  }
}

void quantize(const float* x, std::size_t n, std::uint32_t bucket, const float* lo,
              const float* hi, std::uint32_t levels, Rounding round, std::uint64_t seed,
              std::uint64_t step, std::uint64_t global_offset, std::uint32_t* q) {
  check_bucket(bucket);
  if (levels == 0 || levels >= (1u << 24)) {
    throw Error(ErrorCode::InvalidArgument, "grid: levels must be in [1, 2^24)");
  }
  const float lf = static_cast<float>(levels);
  // The random bits of up to 256 elements at a time from the codec's vector Philox (eight
  // elements per block): the same bits as math::rounding_bits per element, a fraction of the work.
  alignas(64) std::uint16_t r[detail::kRoundingBits];
  for (std::size_t s = 0, b = 0; s < n; s += bucket, ++b) {
    const std::size_t m = n - s < bucket ? n - s : bucket;
    const math::Grid g = grid_of(lo[b], hi[b], levels);
    for (std::size_t c = 0; c < m; c += detail::kRoundingChunk) {
      const std::uint32_t k =
          static_cast<std::uint32_t>(m - c < detail::kRoundingChunk ? m - c : detail::kRoundingChunk);
      const float* xs = x + s + c;
      std::uint32_t* qs = q + s + c;
      if (round == Rounding::Stochastic) {
        const std::uint64_t g0 = global_offset + s + c;
        detail::rounding_bits(seed, step, g0, k, r);
        const std::uint16_t* w = r + (g0 & 7u);
        for (std::uint32_t i = 0; i < k; ++i)
          qs[i] = math::round_stochastic(math::grid_position(xs[i], g, lf), w[i]);
      } else {
        for (std::uint32_t i = 0; i < k; ++i) qs[i] = math::round_nearest(math::grid_position(xs[i], g, lf));
      }
    }
  }
}

void dequantize_sum(const std::uint32_t* qsum, std::size_t n, std::uint32_t bucket,
                    const float* lo, const float* hi, std::uint32_t levels, std::uint32_t terms,
                    float* out) {
  check_bucket(bucket);
  for (std::size_t s = 0, b = 0; s < n; s += bucket, ++b) {
    const std::size_t m = n - s < bucket ? n - s : bucket;
    const math::Grid g = grid_of(lo[b], hi[b], levels);
    const float base = static_cast<float>(terms) * g.lo;
    for (std::size_t i = 0; i < m; ++i) out[s + i] = base + static_cast<float>(qsum[s + i]) * g.step;
  }
}

float error_bound(float lo, float hi, std::uint32_t levels, Rounding round) {
  const math::Grid g = grid_of(lo, hi, levels);
  const float steps = round == Rounding::Stochastic ? 1.0f : 0.5f;
  return steps * g.step + 0x1p-19f * (std::fabs(lo) + std::fabs(hi)) + 0x1p-120f;
}

}  // namespace gradwire::grid
