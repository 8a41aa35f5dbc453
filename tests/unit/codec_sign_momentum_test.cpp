// Sign with error feedback under heavy-ball momentum (docs/codecs.md, "Sign and momentum").
// The closed loop of the issue-14 reproduction: SGD with momentum 0.9 after the exchange on
// a quadratic with curvatures spread over three decades, gradient noise, the gradient
// encoded with error feedback. Plain sign lets the largest elements of a bucket move by only
// the bucket's mean per step; their mass winds up in the residual and the loop grows without
// bound. sign:outliers=5 sends each bucket's five largest exactly: the residual stays within
// a small multiple of the gradient for thousands of steps. Also: the outlier format itself.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include <gradwire/codec.hpp>

namespace {

using gradwire::Codec;
using gradwire::DType;

struct LoopResult {
  double max_ratio = 0;  // max over steps of |residual| / |gradient|
  double final_loss = 0;
  bool finite = true;
};

LoopResult heavy_ball_loop(const char* spec, int steps) {
  const std::size_t n = 8192;
  const Codec c = gradwire::make_codec(spec);
  std::mt19937_64 rng(1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::vector<float> w(n), h(n), g(n), r(n, 0.0f), m(n, 0.0f), out(n);
  for (std::size_t i = 0; i < n; ++i) {
    w[i] = normal(rng);
    h[i] = static_cast<float>(std::pow(10.0, -3.0 * unit(rng)));
  }
  std::vector<std::byte> msg(c.max_encoded_bytes(n));
  LoopResult res;
  for (int t = 0; t < steps; ++t) {
    double gn = 0, rn = 0, loss = 0;
    for (std::size_t i = 0; i < n; ++i) {
      g[i] = h[i] * w[i] + 0.1f * normal(rng);
      gn += static_cast<double>(g[i]) * g[i];
      loss += 0.5 * h[i] * w[i] * w[i];
    }
    if (!std::isfinite(loss) || loss > 1e12) {
      res.finite = false;
      return res;
    }
    const std::size_t bytes = c.encode(g.data(), DType::Float32, n, 0, 1, static_cast<std::uint64_t>(t),
                                       msg.data(), msg.size(), r.data());
    c.decode(msg.data(), bytes, out.data(), DType::Float32, n);
    for (std::size_t i = 0; i < n; ++i) {
      rn += static_cast<double>(r[i]) * r[i];
      m[i] = 0.9f * m[i] + out[i];  // heavy ball after the exchange, lr 0.05
      w[i] -= 0.05f * m[i];
    }
    res.max_ratio = std::max(res.max_ratio, std::sqrt(rn / gn));
    res.final_loss = loss;
  }
  return res;
}

TEST(SignMomentum, PlainSignWindsUpAndDiverges) {
  // The cause, kept reproducible: without outliers the loop leaves every bound.
  const LoopResult plain = heavy_ball_loop("sign", 1500);
  EXPECT_TRUE(!plain.finite || plain.max_ratio > 100.0)
      << "max |r|/|g| " << plain.max_ratio << ", final loss " << plain.final_loss;
}

TEST(SignMomentum, OutliersKeepTheResidualBounded) {
  const LoopResult out = heavy_ball_loop("sign:outliers=5", 2000);
  ASSERT_TRUE(out.finite);
  // Uncompressed SGD ends near 10 on this problem (the noise floor); the residual stays
  // within a few gradients' norm over all 2000 steps.
  EXPECT_LT(out.max_ratio, 5.0);
  EXPECT_LT(out.final_loss, 20.0);
}

TEST(SignMomentum, OutliersTravelExactlyAndTheScaleIsTheMeanOfTheRest) {
  const Codec c = gradwire::make_codec("sign:bucket=64,outliers=2");
  EXPECT_EQ(c.spec().to_string(), "sign:bucket=64,outliers=2");
  EXPECT_EQ(gradwire::parse_codec(c.spec().to_string()), c.spec());
  std::vector<float> x(100);  // a full bucket and a partial one of 36
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = (i % 2 ? -1.0f : 1.0f) * (1.0f + static_cast<float>(i % 5));
  x[10] = 50.0f, x[20] = -40.0f, x[70] = 30.0f, x[99] = -30.0f;
  std::vector<std::byte> msg(c.max_encoded_bytes(x.size()));
  std::vector<float> res(x.size(), 0.0f), out(x.size());
  const std::size_t bytes = c.encode(x.data(), DType::Float32, x.size(), 0, 0, 0, msg.data(), msg.size(), res.data());
  EXPECT_EQ(bytes, msg.size());  // dense: the bound is exact
  c.decode(msg.data(), bytes, out.data(), DType::Float32, x.size());
  for (std::size_t b = 0; b < 2; ++b) {
    const std::size_t lo = b * 64, hi = std::min<std::size_t>(x.size(), lo + 64);
    const std::size_t o1 = b ? 70 : 10, o2 = b ? 99 : 20;
    double sum = 0;
    for (std::size_t i = lo; i < hi; ++i)
      if (i != o1 && i != o2) sum += std::fabs(x[i]);
    const float scale = static_cast<float>(sum / static_cast<double>(hi - lo - 2));
    for (std::size_t i = lo; i < hi; ++i) {
      if (i == o1 || i == o2) {
        EXPECT_EQ(out[i], x[i]) << i;
        EXPECT_EQ(res[i], 0.0f) << i;
      } else {
        EXPECT_EQ(out[i], x[i] < 0 ? -scale : scale) << i;
        EXPECT_EQ(res[i], x[i] - out[i]) << i;
      }
    }
  }
  // decode_add adds the outliers' exact values too.
  std::vector<float> acc(x.size(), 1.0f);
  c.decode_add(msg.data(), bytes, acc.data(), x.size());
  EXPECT_EQ(acc[10], 51.0f);
  // A decoder of plain sign refuses the message (the outlier count is in the header).
  EXPECT_ANY_THROW(gradwire::make_codec("sign:bucket=64").decode(msg.data(), bytes, out.data(),
                                                                 DType::Float32, x.size()));
  // A corrupt outlier index is a wire-format error, before anything is written.
  const std::size_t records = bytes - 8 * 4;  // the four records come last
  std::vector<std::byte> bad(msg.begin(), msg.begin() + static_cast<std::ptrdiff_t>(bytes));
  bad[records] = std::byte{200};
  EXPECT_ANY_THROW(c.decode(bad.data(), bytes, out.data(), DType::Float32, x.size()));
  EXPECT_ANY_THROW(gradwire::parse_codec("sign:outliers=128"));
  EXPECT_ANY_THROW(gradwire::parse_codec("q4:outliers=2"));
}

}  // namespace
