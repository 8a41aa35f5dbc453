// Round trips of every codec and input dtype, each element within the documented bound.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "codec_test_util.hpp"
#include "gradwire/error.hpp"

using gradwire::Codec;
using gradwire::DType;

namespace {

class RoundTrip : public ::testing::TestWithParam<const char*> {};

// Input dtypes: the float32 reference x is what a float16/bfloat16 input holds exactly.
std::vector<float> as_dtype(const std::vector<float>& x, DType t) {
  std::vector<float> r(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    r[i] = t == DType::Float16   ? gradwire::math::half_to_float(gradwire::math::float_to_half(x[i]))
           : t == DType::BFloat16 ? gradwire::math::bf16_to_float(gradwire::math::float_to_bf16(x[i]))
                                  : x[i];
  }
  return r;
}

TEST_P(RoundTrip, EveryElementWithinBoundForEachInputDtype) {
  const Codec c = gradwire::make_codec(GetParam());
  // 1000 elements: several buckets and a partial last one; mixed scales across buckets.
  const std::size_t n = 1000;
  std::vector<float> base = gwtest::gaussian(n, 7, 0.01f);
  for (std::size_t i = 512; i < n; ++i) base[i] = base[i] * 300.0f + 2.0f;
  for (const DType t : {DType::Float32, DType::Float16, DType::BFloat16}) {
    const std::vector<float> x = as_dtype(base, t);
    std::vector<std::uint16_t> x16(n);
    for (std::size_t i = 0; i < n; ++i) {
      x16[i] = t == DType::Float16 ? gradwire::math::float_to_half(x[i]) : gradwire::math::float_to_bf16(x[i]);
    }
    const void* in = t == DType::Float32 ? static_cast<const void*>(x.data()) : x16.data();
    std::vector<std::byte> m(c.max_encoded_bytes(n));
    const std::size_t bytes = c.encode(in, t, n, 0, 42, 3, m.data(), m.size());
    ASSERT_LE(bytes, m.size());
    if (!c.sparse()) {
      ASSERT_EQ(bytes, m.size()) << "dense sizes are exact";
    }
    m.resize(bytes);
    const std::vector<float> y = gwtest::decode(c, m, n);
    const std::vector<float> bound = c.error_bounds(x.data(), n);
    for (std::size_t i = 0; i < n; ++i) {
      ASSERT_LE(std::fabs(x[i] - y[i]), bound[i])
          << GetParam() << " dtype " << gradwire::dtype_name(t) << " i=" << i << " x=" << x[i]
          << " y=" << y[i];
    }
    // decode_add adds exactly the decoded values.
    std::vector<float> acc(n, 1.5f);
    c.decode_add(m.data(), m.size(), acc.data(), n);
    for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(acc[i], 1.5f + y[i]) << i;
  }
}

TEST_P(RoundTrip, DecodesToHalfPrecisionOutputs) {
  const Codec c = gradwire::make_codec(GetParam());
  const std::size_t n = 300;
  const std::vector<float> x = gwtest::gaussian(n, 11);
  const auto m = gwtest::encode(c, x.data(), n);
  const std::vector<float> y = gwtest::decode(c, m, n);
  std::vector<gradwire::float16_t> h(n);
  std::vector<gradwire::bfloat16_t> b(n);
  c.decode(m.data(), m.size(), h.data(), DType::Float16, n);
  c.decode(m.data(), m.size(), b.data(), DType::BFloat16, n);
  for (std::size_t i = 0; i < n; ++i) {
    ASSERT_EQ(h[i].bits, gradwire::math::float_to_half(y[i])) << i;
    ASSERT_EQ(b[i].bits, gradwire::math::float_to_bf16(y[i])) << i;
  }
}

// Error feedback: after T steps, sum of decoded outputs == sum of inputs - final residual.
TEST_P(RoundTrip, ErrorFeedbackConservesTheSum) {
  const Codec c = gradwire::make_codec(GetParam());
  const std::size_t n = 700;
  const int steps = 20;
  std::vector<float> residual(n, 0.0f);
  std::vector<double> sum_in(n, 0.0), sum_out(n, 0.0), tol(n, 0.0);
  for (int s = 0; s < steps; ++s) {
    const std::vector<float> x = gwtest::gaussian(n, 100 + s, 0.1f);
    std::vector<float> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = x[i] + residual[i];
    const auto m = gwtest::encode(c, x.data(), n, 0, 9, s, residual.data());
    const std::vector<float> y = gwtest::decode(c, m, n);
    for (std::size_t i = 0; i < n; ++i) {
      sum_in[i] += x[i];
      sum_out[i] += y[i];
      // Per step the identity v = y + e' holds up to the rounding of x + e and of v - y:
      // half an ulp each, 2^-24 (|v| + |e'|) together; doubled for margin.
      tol[i] += 0x1p-23 * (std::fabs(v[i]) + std::fabs(residual[i]));
    }
  }
  for (std::size_t i = 0; i < n; ++i) {
    ASSERT_NEAR(sum_out[i], sum_in[i] - residual[i], tol[i]) << GetParam() << " i=" << i;
  }
}

INSTANTIATE_TEST_SUITE_P(AllCodecs, RoundTrip, ::testing::ValuesIn(gwtest::all_specs()),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& ch : s) {
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return s;
                         });

}  // namespace
