// The counter-based generator and what rests on it: known answers, unbiased stochastic
// rounding, and results that do not depend on how a gradient is cut into slices.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "codec/grid.hpp"
#include "codec/isa.hpp"
#include "codec_test_util.hpp"
#include "math/philox.hpp"
#include "math/quant.hpp"

namespace {

using gradwire::math::philox4x32_10;
using gradwire::math::U32x4;

// Known-answer vectors of Philox4x32-10 published with Random123 (kat_vectors).
TEST(Philox, MatchesPublishedKnownAnswers) {
  const struct {
    U32x4 ctr;
    std::uint32_t k0, k1;
    U32x4 want;
  } kat[] = {
      {{{0, 0, 0, 0}}, 0, 0, {{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}}},
      {{{~0u, ~0u, ~0u, ~0u}}, ~0u, ~0u, {{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}}},
      {{{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}}, 0xa4093822, 0x299f31d0,
       {{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}}},
  };
  for (const auto& k : kat) {
    const U32x4 r = philox4x32_10(k.ctr, k.k0, k.k1);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(r.v[i], k.want.v[i]) << i;
  }
}

// The mean of many seeded encodings approaches x: each decode is x's lower or upper grid
// point with probabilities making it unbiased, so the mean of N draws has standard deviation
// at most step / (2 sqrt(N)). We allow 6 of those plus float slack (fixed seeds: the test is
// deterministic; the 6-sigma margin is what makes it meaningful rather than fitted).
TEST(StochasticRounding, MeanOfSeededEncodingsApproachesInput) {
  for (const char* spec : {"q1", "q2", "q4", "q8", "q2:scale=absmax"}) {
    const auto c = gradwire::make_codec(spec);
    const std::size_t n = 256;
    const std::vector<float> x = gwtest::gaussian(n, 5);
    const int draws = 4000;
    std::vector<double> mean(n, 0.0);
    for (int d = 0; d < draws; ++d) {
      const auto m = gwtest::encode(c, x.data(), n, 0, 1234, d);
      const auto y = gwtest::decode(c, m, n);
      for (std::size_t i = 0; i < n; ++i) mean[i] += y[i] / draws;
    }
    const float bound1 = c.error_bounds(x.data(), n)[0];  // one step (+ slack): one bucket
    const double tol = 6.0 * bound1 / (2.0 * std::sqrt(static_cast<double>(draws))) + 1e-5;
    double worst = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
      worst = std::max(worst, std::fabs(mean[i] - x[i]));
      ASSERT_NEAR(mean[i], x[i], tol) << spec << " i=" << i;
    }
    // Nearest rounding has a deterministic bias that stochastic rounding removes: the mean
    // error must be well below the half-step that nearest rounding can reach.
    EXPECT_LT(worst, 0.25 * bound1) << spec;
  }
}

// The rounding rule exhaustively: over all 2^16 values of an element's random bits, t rounds
// up for floor((floor(2^17 frac(t)) + 1) / 2) of them, so P(up) is within 2^-17 of frac(t)
// (the bias bound docs/codecs.md states), a grid point never moves, and a half rounds up
// exactly half the time. Nearest rounding (always or never up) fails every non-trivial case.
TEST(StochasticRounding, UpProbabilityIsTheFractionToWithinTwoToTheMinus17) {
  std::mt19937 gen(11);
  std::uniform_real_distribution<float> d(0.0f, 255.0f);
  std::vector<float> ts = {0.0f, 1.0f, 3.0f, 0.5f, 7.5f, 1e-9f, 1e-5f, 0.25f, 0.999999f, 254.99998f,
                           static_cast<float>(3 + 0.5 / 65536.0), static_cast<float>(2.0 - 0.5 / 65536.0),
                           static_cast<float>(1.0 + 1.5 / 65536.0), 255.0f};
  for (int i = 0; i < 200; ++i) ts.push_back(d(gen));
  for (const float t : ts) {
    const auto f = static_cast<std::uint32_t>(t);
    const double frac = static_cast<double>(t) - f;
    std::uint32_t up = 0;
    for (std::uint32_t r = 0; r < 65536u; ++r) {
      const std::uint32_t q = gradwire::math::round_stochastic(t, r);
      ASSERT_TRUE(q == f || q == f + 1) << t << " r=" << r;
      up += q - f;
    }
    const double want = std::floor((std::floor(frac * 131072.0) + 1.0) / 2.0);
    EXPECT_EQ(up, static_cast<std::uint32_t>(want)) << "t=" << t;
    EXPECT_LE(std::fabs(up / 65536.0 - frac), 0x1p-17) << "t=" << t;
    if (frac == 0.0) {
      EXPECT_EQ(up, 0u) << "t=" << t;
    }
    if (frac == 0.5) {
      EXPECT_EQ(up, 32768u) << "t=" << t;
    }
  }
  // Only the low 16 bits count (the rule of math::rounding_bits).
  EXPECT_EQ(gradwire::math::round_stochastic(0.5f, 0x12340000u), gradwire::math::round_stochastic(0.5f, 0u));
}

// The stream's definition, element by element: half-word g % 8 of Philox block g / 8 of the
// Rounding stream, low half first.
TEST(StochasticRounding, BitsAreHalfWordsOfOneBlockPerEightElements) {
  for (const std::uint64_t g : {0ull, 1ull, 6ull, 7ull, 8ull, 13ull, (1ull << 35) + 5}) {
    const U32x4 b = gradwire::math::philox_block(42, 9, gradwire::math::Stream::Rounding, g / 8);
    const std::uint32_t w = b.v[(g % 8) / 2];
    EXPECT_EQ(gradwire::math::rounding_bits(42, 9, g), g % 2 ? w >> 16 : w & 0xffffu) << g;
  }
}

// The codec's encoders (every kernel level, slices that start anywhere in a Philox block, with
// and without error feedback) give the codes of that definition: bucket range, grid, then
// math::round_stochastic with math::rounding_bits of the element's global index.
TEST(StochasticRounding, EncodersRoundWithTheDefinedBitsAtEveryLevel) {
  using gradwire::detail::KernelLevel;
  namespace m = gradwire::math;
  const std::size_t n = 1000;
  const std::vector<float> x = gwtest::gaussian(n, 21);
  for (KernelLevel level : {KernelLevel::Generic, KernelLevel::Avx2, KernelLevel::Avx512}) {
    gradwire::detail::limit_kernels(level);
    for (const char* spec : {"q8", "q4:bucket=64", "q2:scale=absmax", "q1:bucket=128"}) {
      const auto c = gradwire::make_codec(spec);
      const std::uint32_t bits = c.spec().bits, bucket = c.spec().bucket;
      const bool absmax = c.spec().scale == gradwire::ScaleMode::AbsMax;
      const float lf = static_cast<float>(m::levels_of(bits));
      for (const std::uint64_t off : {0ull, 3ull, 4ull, 7ull, 1000005ull}) {
        for (const bool ef : {false, true}) {
          std::vector<float> res(n, 0.0f), v = x;
          if (ef) {
            for (std::size_t i = 0; i < n; ++i) res[i] = 0.01f * x[(i * 7) % n];
            for (std::size_t i = 0; i < n; ++i) v[i] = x[i] + res[i];
          }
          const auto msg = gwtest::encode(c, x.data(), n, off, 5, 17, ef ? res.data() : nullptr);
          const auto y = gwtest::decode(c, msg, n);
          for (std::size_t s = 0; s < n; s += bucket) {
            const std::uint32_t k = static_cast<std::uint32_t>(std::min<std::size_t>(bucket, n - s));
            const auto st = m::bucket_stats([&](std::uint32_t i) { return v[s + i]; }, k);
            const m::Grid g = absmax ? m::grid_absmax(m::bits_float(st.amax), m::levels_of(bits))
                                     : m::grid_minmax(st.lo, st.hi, m::levels_of(bits));
            for (std::uint32_t i = 0; i < k; ++i) {
              const std::uint32_t q =
                  m::round_stochastic(m::grid_position(v[s + i], g, lf), m::rounding_bits(5, 17, off + s + i));
              ASSERT_EQ(y[s + i], m::dequantize(q, g))
                  << spec << " level " << static_cast<int>(level) << " offset " << off << " ef " << ef
                  << " i " << s + i;
              if (ef) {
                ASSERT_EQ(res[s + i], v[s + i] - m::dequantize(q, g)) << spec << " i " << s + i;
              }
            }
          }
        }
      }
    }
  }
  gradwire::detail::limit_kernels(KernelLevel::Avx512);  // no cap
}

// Same codes whether a gradient is encoded whole or as bucket-aligned slices.
TEST(StochasticRounding, SlicesAlignedToBucketsEncodeLikeTheWhole) {
  const auto c = gradwire::make_codec("q4:bucket=64");
  const std::size_t n = 64 * 10 + 13;
  const std::vector<float> x = gwtest::gaussian(n, 8);
  const auto whole = gwtest::decode(c, gwtest::encode(c, x.data(), n, 1000, 77, 5), n);
  for (const std::size_t cut : {64u, 192u, 448u}) {
    const auto a = gwtest::decode(c, gwtest::encode(c, x.data(), cut, 1000, 77, 5), cut);
    const auto b = gwtest::decode(c, gwtest::encode(c, x.data() + cut, n - cut, 1000 + cut, 77, 5), n - cut);
    for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(whole[i], i < cut ? a[i] : b[i - cut]) << cut << " " << i;
  }
  // And the seed and step matter.
  const auto other = gwtest::decode(c, gwtest::encode(c, x.data(), n, 1000, 77, 6), n);
  EXPECT_NE(other, whole);
}

// The shared-grid pieces: quantize on a given grid, sum codes, dequantize once.
TEST(SharedGrid, SumOfCodesDequantizesWithinRanksTimesBound) {
  const std::size_t n = 300, ranks = 3;
  const std::uint32_t bucket = 128, levels = 15;
  std::vector<std::vector<float>> x;
  for (std::size_t r = 0; r < ranks; ++r) x.push_back(gwtest::gaussian(n, 40 + r));
  const std::size_t nb = gradwire::grid::bucket_count(n, bucket);
  std::vector<float> lo(nb, 1e30f), hi(nb, -1e30f), l(nb), h(nb);
  for (std::size_t r = 0; r < ranks; ++r) {  // what allreduce(MIN lo, MAX hi) computes
    gradwire::grid::bucket_minmax(x[r].data(), n, bucket, l.data(), h.data());
    for (std::size_t b = 0; b < nb; ++b) {
      lo[b] = std::min(lo[b], l[b]);
      hi[b] = std::max(hi[b], h[b]);
    }
  }
  std::vector<std::uint32_t> qsum(n, 0), q(n);
  for (std::size_t r = 0; r < ranks; ++r) {
    gradwire::grid::quantize(x[r].data(), n, bucket, lo.data(), hi.data(), levels,
                             gradwire::Rounding::Stochastic, 9, 1, 0, q.data());
    for (std::size_t i = 0; i < n; ++i) {
      ASSERT_LE(q[i], levels);
      qsum[i] += q[i];
    }
  }
  std::vector<float> sum(n);
  gradwire::grid::dequantize_sum(qsum.data(), n, bucket, lo.data(), hi.data(), levels, ranks, sum.data());
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t b = i / bucket;
    double exact = 0.0;
    for (std::size_t r = 0; r < ranks; ++r) exact += x[r][i];
    const float bound = gradwire::grid::error_bound(lo[b], hi[b], levels, gradwire::Rounding::Stochastic);
    ASSERT_LE(std::fabs(sum[i] - exact), ranks * bound + 1e-5) << i;
  }
}

}  // namespace
