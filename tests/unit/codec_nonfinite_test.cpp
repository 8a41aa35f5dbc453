// NaN and infinity: each codec's documented behaviour (docs/codecs.md), never UB.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "codec_test_util.hpp"
#include "gradwire/error.hpp"

namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kInf = std::numeric_limits<float>::infinity();

TEST(NonFinite, CastsCarryNaNAndInfinity) {
  for (const char* spec : {"none", "fp16", "bf16"}) {
    const auto c = gradwire::make_codec(spec);
    std::vector<float> x = {1.0f, kNaN, kInf, -kInf, -0.0f, 1e30f};
    const auto y = gwtest::decode(c, gwtest::encode(c, x.data(), x.size()), x.size());
    EXPECT_EQ(y[0], 1.0f) << spec;
    EXPECT_TRUE(std::isnan(y[1])) << spec;
    EXPECT_EQ(y[2], kInf) << spec;
    EXPECT_EQ(y[3], -kInf) << spec;
    EXPECT_TRUE(y[4] == 0.0f && std::signbit(y[4])) << spec;
    // fp16 overflows to infinity (documented: beyond 65504), the others keep 1e30.
    EXPECT_EQ(y[5], std::string(spec) == "fp16" ? kInf : (std::string(spec) == "bf16" ? gradwire::math::bf16_to_float(gradwire::math::float_to_bf16(1e30f)) : 1e30f)) << spec;
  }
}

TEST(NonFinite, QuantizersAndSignRejectNonFiniteInputNamingTheIndex) {
  for (const char* spec : {"q8", "q4:scale=absmax", "q1:round=nearest", "sign"}) {
    const auto c = gradwire::make_codec(spec);
    for (const float bad : {kNaN, kInf, -kInf}) {
      std::vector<float> x = gwtest::gaussian(1000, 1);
      x[777] = bad;
      try {
        gwtest::encode(c, x.data(), x.size(), 5000);
        ADD_FAILURE() << spec << " accepted " << bad;
      } catch (const gradwire::Error& e) {
        EXPECT_EQ(e.code(), gradwire::ErrorCode::InvalidArgument);
        EXPECT_NE(std::string(e.what()).find("global index 5777"), std::string::npos) << e.what();
      }
    }
  }
}

TEST(NonFinite, RangeOverflowIsAnErrorForMinMaxButNotAbsMax) {
  std::vector<float> x(64, 0.0f);
  x[0] = -3e38f;
  x[1] = 3e38f;
  EXPECT_THROW(gwtest::encode(gradwire::make_codec("q8"), x.data(), x.size()), gradwire::Error);
  const auto c = gradwire::make_codec("q8:scale=absmax,round=nearest");
  const auto y = gwtest::decode(c, gwtest::encode(c, x.data(), x.size()), x.size());
  const auto b = c.error_bounds(x.data(), x.size());
  for (std::size_t i = 0; i < x.size(); ++i) ASSERT_LE(std::fabs(x[i] - y[i]), b[i]) << i;
}

TEST(NonFinite, TinyAndFlatBucketsAreExactOrWithinBound) {
  // A flat bucket (step 0), and one whose step is far below FLT_MIN (1/step overflows).
  std::vector<float> x(128, 3.0f);
  for (std::size_t i = 64; i < 128; ++i) x[i] = (i % 2) ? 1e-44f : 0.0f;
  for (const char* spec : {"q8", "q1", "q4:round=nearest", "q2:scale=absmax"}) {
    const auto c = gradwire::make_codec(spec);
    const auto y = gwtest::decode(c, gwtest::encode(c, x.data(), x.size()), x.size());
    const auto b = c.error_bounds(x.data(), x.size());
    for (std::size_t i = 0; i < 64; ++i) ASSERT_EQ(y[i], 3.0f) << spec;
    for (std::size_t i = 64; i < 128; ++i) ASSERT_LE(std::fabs(x[i] - y[i]), b[i]) << spec << i;
  }
}

TEST(NonFinite, SparseCodecsCarryThem) {
  std::vector<float> x(200, 0.0f);
  x[3] = kNaN;
  x[4] = -kInf;
  for (const char* spec : {"threshold:0.1", "topk:k=2,value=f16"}) {
    const auto c = gradwire::make_codec(spec);
    const auto y = gwtest::decode(c, gwtest::encode(c, x.data(), x.size()), x.size());
    EXPECT_TRUE(std::isnan(y[3])) << spec;
    EXPECT_EQ(y[4], -kInf) << spec;
  }
}

}  // namespace
