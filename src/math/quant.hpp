// Per-element and per-bucket math of the quantizing codecs (q1..q8, sign), written once and
// compiled into the host codecs and the CUDA kernels alike. Everything here is exact IEEE
// single precision (no contraction, no fast-math; the CUDA build passes --fmad=false), and
// every reduction has a fixed order, so host and device produce the same bits.
#pragma once

#include <cstdint>

#include "math/half.hpp"
#include "math/hd.hpp"

namespace gradwire::math {

// |x| as an ordered integer: for the 31 low bits of an IEEE float, integer order is
// magnitude order, with +Inf (0x7f800000) above every finite value and NaN above +Inf.
GW_HD std::uint32_t abs_bits(float x) { return float_bits(x) & 0x7fffffffu; }
constexpr std::uint32_t kInfBits = 0x7f800000u;

// A uniform grid lo + q * step, q in [0, levels]; inv is 1/step (0 for a flat bucket), used
// by the encoder only, never sent.
struct Grid {
  float lo;
  float step;
  float inv;
};

GW_HD float grid_inverse(float step) { return step > 0.0f ? 1.0f / step : 0.0f; }

// Min-max grid over [lo, hi]. The division is done in double so that hi - lo is exact; the
// caller has checked that hi - lo is a finite float.
GW_HD Grid grid_minmax(float lo, float hi, std::uint32_t levels) {
  const float step = static_cast<float>((static_cast<double>(hi) - static_cast<double>(lo)) /
                                        static_cast<double>(levels));
  return Grid{lo, step, grid_inverse(step)};
}

// Symmetric grid over [-m, m] (abs-max scaling); only m travels on the wire.
GW_HD Grid grid_absmax(float m, std::uint32_t levels) {
  const float step = static_cast<float>(2.0 * static_cast<double>(m) / static_cast<double>(levels));
  return Grid{-m, step, grid_inverse(step)};
}

// Position of v on the grid, clamped to [0, levels]. The comparisons are written so that a
// NaN position (0 * inf on a degenerate grid) lands on 0: the float->int conversions that
// follow are then always in range.
GW_HD float grid_position(float v, Grid g, float levels) {
  float t = (v - g.lo) * g.inv;
  t = t > 0.0f ? t : 0.0f;
  t = t < levels ? t : levels;
  return t;
}

// Round to nearest, ties away from zero in grid units (t + 0.5 is exact for t < 2^23).
GW_HD std::uint32_t round_nearest(float t) {
  return static_cast<std::uint32_t>(static_cast<std::int32_t>(t + 0.5f));
}

// Stochastic rounding from 16 random bits r (0..65535, math::rounding_bits): with
// F = floor(2^17 frac(t)), t rounds up iff F + 2r + 1 >= 2^17. That holds for
// floor((F + 1) / 2) of the 2^16 values of r, so P(up) is within 2^-17 of frac(t): unbiased
// to within 2^-17 of a step; a value on the grid (frac = 0, F = 0) never moves. frac and
// 2^17 frac are exact (t < 2^24). In integers, f + ((F + 2r + 1) >> 17) is
// (floor(2^17 t) + 2r + 1) >> 17, which is how the host's vector loops compute it (t < 2^14
// there: floor(2^17 t) fits an int32).
GW_HD std::uint32_t round_stochastic(float t, std::uint32_t r) {
  const std::int32_t f = static_cast<std::int32_t>(t);  // floor, as t >= 0
  const float frac = t - static_cast<float>(f);
  // floor(2^17 frac) < 2^17, converted as a signed int (vectorizes on SSE2, as uint32 does not)
  const auto F = static_cast<std::uint32_t>(static_cast<std::int32_t>(frac * 131072.0f));
  return static_cast<std::uint32_t>(f) + ((F + 2u * (r & 0xffffu) + 1u) >> 17);
}

GW_HD float dequantize(std::uint32_t q, Grid g) { return g.lo + static_cast<float>(q) * g.step; }

// One-bit sign code: bit 1 for negative; +0, -0 and positives decode to +scale.
GW_HD std::uint32_t sign_bit(float v) { return v < 0.0f ? 1u : 0u; }
GW_HD float sign_value(std::uint32_t bit, float scale) { return bit ? -scale : scale; }

// Per-bucket reductions with a fixed order: lane j (0..7) folds elements j, j+8, j+16, ...
// of the bucket in increasing order, then the lanes combine as ((0+1)+(2+3))+((4+5)+(6+7)).
// min/max are exact whatever the order; the sum of |v| (sign's scale) is not, hence the rule.
struct BucketStats {
  float lo, hi;          // min and max (signed zeros normalised to +0)
  std::uint32_t amax;    // max abs_bits: >= kInfBits means a non-finite value
  float abs_sum;         // sum of |v| in the order above
};

template <class Load>
GW_HD BucketStats bucket_stats(Load load, std::uint32_t n) {
  float lo[8], hi[8], s[8];
  std::uint32_t am[8];
  for (int j = 0; j < 8; ++j) {
    lo[j] = 3.4028234663852886e38f;
    hi[j] = -3.4028234663852886e38f;
    s[j] = 0.0f;
    am[j] = 0;
  }
  std::uint32_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) {
      const float v = load(i + j);
      lo[j] = v < lo[j] ? v : lo[j];
      hi[j] = v > hi[j] ? v : hi[j];
      const std::uint32_t a = abs_bits(v);
      am[j] = a > am[j] ? a : am[j];
      s[j] += bits_float(a);
    }
  }
  for (int j = 0; i + j < n; ++j) {
    const float v = load(i + j);
    lo[j] = v < lo[j] ? v : lo[j];
    hi[j] = v > hi[j] ? v : hi[j];
    const std::uint32_t a = abs_bits(v);
    am[j] = a > am[j] ? a : am[j];
    s[j] += bits_float(a);
  }
  BucketStats r{lo[0], hi[0], am[0], 0.0f};
  for (int j = 1; j < 8; ++j) {
    r.lo = lo[j] < r.lo ? lo[j] : r.lo;
    r.hi = hi[j] > r.hi ? hi[j] : r.hi;
    r.amax = am[j] > r.amax ? am[j] : r.amax;
  }
  r.lo += 0.0f;  // -0 -> +0, so the scale bits never depend on which zero came first
  r.hi += 0.0f;
  r.abs_sum = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
  return r;
}

// Levels of a b-bit code: 2^b - 1 intervals.
GW_HD std::uint32_t levels_of(std::uint32_t bits) { return (1u << bits) - 1u; }

}  // namespace gradwire::math
