// Sparsifiers: top-k selects exactly the k largest |x| (ties to the lower index), random-k
// draws the same indices for the same (seed, step), threshold keeps |x| >= t.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "codec_test_util.hpp"

namespace {

// Reference: full sort by (|x| desc, index asc), first k, as a set.
std::vector<std::uint32_t> reference_topk(const std::vector<float>& x, std::size_t k) {
  std::vector<std::uint32_t> order(x.size());
  std::iota(order.begin(), order.end(), 0u);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::uint32_t a, std::uint32_t b) { return std::fabs(x[a]) > std::fabs(x[b]); });
  order.resize(k);
  std::sort(order.begin(), order.end());
  return order;
}

std::vector<std::uint32_t> nonzeros(const std::vector<float>& y) {
  std::vector<std::uint32_t> r;
  for (std::size_t i = 0; i < y.size(); ++i) {
    if (y[i] != 0.0f) r.push_back(static_cast<std::uint32_t>(i));
  }
  return r;
}

TEST(TopK, SelectsExactlyTheKLargestMagnitudes) {
  // Sizes on both sides of the sampled-threshold path (n >= 32768) and ratios that make the
  // sample guess both easy and hard.
  for (const std::size_t n : {100u, 5000u, 40000u, 100000u}) {
    for (const char* spec : {"topk:0.01", "topk:0.3", "topk:k=1", "topk:0.01,index=delta"}) {
      const auto c = gradwire::make_codec(spec);
      const std::vector<float> x = gwtest::gaussian(n, n + 3);
      const std::size_t k = c.topk_count(n);
      const auto y = gwtest::decode(c, gwtest::encode(c, x.data(), n), n);
      ASSERT_EQ(nonzeros(y), reference_topk(x, k)) << spec << " n=" << n;
      for (const std::uint32_t i : nonzeros(y)) ASSERT_EQ(y[i], x[i]);
    }
  }
}

TEST(TopK, TiesGoToTheLowerIndex) {
  // Many equal magnitudes of both signs: the k chosen are the lowest indices among ties.
  const std::size_t n = 50000;
  std::vector<float> x(n);
  for (std::size_t i = 0; i < n; ++i) x[i] = (i % 7 == 0 ? 2.0f : 1.0f) * (i % 2 ? -1.0f : 1.0f);
  const auto c = gradwire::make_codec("topk:k=9000");
  const auto y = gwtest::decode(c, gwtest::encode(c, x.data(), n), n);
  const auto got = nonzeros(y);
  ASSERT_EQ(got, reference_topk(x, 9000));
  // 7143 elements of magnitude 2, then the first 1857 of magnitude 1 by index.
  std::size_t ones = 0, last_one = 0;
  for (const auto i : got) {
    if (std::fabs(x[i]) == 1.0f) {
      ++ones;
      last_one = i;
    }
  }
  EXPECT_EQ(ones, 9000u - 7143u);
  EXPECT_LT(last_one, 2200u);
}

TEST(TopK, NaNAndInfinityRankAboveEveryFiniteValue) {
  std::vector<float> x = gwtest::gaussian(1000, 2);
  x[10] = std::nanf("");
  x[500] = -INFINITY;
  const auto c = gradwire::make_codec("topk:k=3");
  const auto y = gwtest::decode(c, gwtest::encode(c, x.data(), x.size()), x.size());
  EXPECT_TRUE(std::isnan(y[10]));
  EXPECT_EQ(y[500], -INFINITY);
}

TEST(RandK, SameSeedAndStepPickSameIndicesWhateverTheSlicing) {
  const std::size_t n = 10000;
  const auto a = gradwire::randk_indices(0.05, 11, 3, 0, n);
  EXPECT_EQ(a, gradwire::randk_indices(0.05, 11, 3, 0, n));
  EXPECT_NE(a, gradwire::randk_indices(0.05, 11, 4, 0, n));
  EXPECT_NE(a, gradwire::randk_indices(0.05, 12, 3, 0, n));
  // Expected count 500, standard deviation ~22: 6 sigma.
  EXPECT_NEAR(static_cast<double>(a.size()), 500.0, 130.0);
  // Slices at arbitrary cuts choose the same global elements.
  for (const std::size_t cut : {1u, 3u, 4097u}) {
    auto lo = gradwire::randk_indices(0.05, 11, 3, 0, cut);
    for (const auto i : gradwire::randk_indices(0.05, 11, 3, cut, n - cut)) {
      lo.push_back(static_cast<std::uint32_t>(i + cut));
    }
    EXPECT_EQ(lo, a) << cut;
  }
  // The codec sends exactly those elements.
  const auto c = gradwire::make_codec("randk:0.05");
  const std::vector<float> x = gwtest::gaussian(n, 1);
  const auto y = gwtest::decode(c, gwtest::encode(c, x.data(), n, 0, 11, 3), n);
  EXPECT_EQ(nonzeros(y), a);
}

TEST(Threshold, KeepsExactlyTheMagnitudesAtOrAboveT) {
  const std::size_t n = 3000;
  std::vector<float> x = gwtest::gaussian(n, 4, 0.01f);
  x[7] = 0.02f;   // exactly at t: kept
  x[8] = -0.02f;  // kept
  const auto c = gradwire::make_codec("threshold:0.02");
  const auto y = gwtest::decode(c, gwtest::encode(c, x.data(), n), n);
  for (std::size_t i = 0; i < n; ++i) {
    ASSERT_EQ(y[i], std::fabs(x[i]) >= 0.02f ? x[i] : 0.0f) << i;
  }
}

TEST(Sparse, DeltaIndicesAreSmallerThanU32) {
  const std::size_t n = 100000;
  const std::vector<float> x = gwtest::gaussian(n, 6);
  const auto u = gwtest::encode(gradwire::make_codec("topk:0.05"), x.data(), n);
  const auto d = gwtest::encode(gradwire::make_codec("topk:0.05,index=delta"), x.data(), n);
  // Gaps average 20: one varint byte for almost all of the 5000 indices instead of four.
  EXPECT_EQ(u.size(), 56u + 5000u * 8u);
  EXPECT_LT(d.size(), 56u + 5000u * 4u + 5000u * 11u / 10u);
}

}  // namespace
