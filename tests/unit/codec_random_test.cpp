// The counter-based generator and what rests on it: known answers, unbiased stochastic
// rounding, and results that do not depend on how a gradient is cut into slices.
#include <gtest/gtest.h>

#include <cmath>

#include "codec/grid.hpp"
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
