// Decoders validate before they read: every defect is a WireFormat error, never a read past
// the buffer (the ASan/UBSan CI job and the fuzz targets back this up).
#include <gtest/gtest.h>

#include <cstring>
#include <limits>

#include "codec/wire.hpp"
#include "codec_test_util.hpp"
#include "gradwire/error.hpp"

namespace {

using gradwire::ErrorCode;

// Expects decode to fail with WireFormat and a message containing `what`.
void expect_rejected(const gradwire::Codec& c, const std::vector<std::byte>& m, std::size_t n,
                     const char* what) {
  std::vector<float> y(n, 7.0f);
  try {
    c.decode(m.data(), m.size(), y.data(), gradwire::DType::Float32, n);
    ADD_FAILURE() << c.spec().to_string() << ": accepted a message with " << what;
  } catch (const gradwire::Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::WireFormat) << e.what();
    EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
  }
  for (const float v : y) ASSERT_EQ(v, 7.0f) << "decoder wrote before validating";
}

void put_f32(std::vector<std::byte>& m, std::size_t at, float v) { std::memcpy(m.data() + at, &v, 4); }
void put_u32(std::vector<std::byte>& m, std::size_t at, std::uint32_t v) { gradwire::wire::store_u32(m.data() + at, v); }
void put_u64(std::vector<std::byte>& m, std::size_t at, std::uint64_t v) { gradwire::wire::store_u64(m.data() + at, v); }

TEST(WireFormat, HeaderLayoutIsAsDocumented) {
  const auto c = gradwire::make_codec("q4:bucket=64,scale=absmax");
  const std::vector<float> x = gwtest::gaussian(100, 1);
  const auto m = gwtest::encode(c, x.data(), x.size());
  ASSERT_EQ(m.size(), 56u + 2u * 4u + 50u);
  EXPECT_EQ(std::memcmp(m.data(), "GWCK", 4), 0);
  EXPECT_EQ(std::to_integer<int>(m[4]), 1);   // version
  EXPECT_EQ(std::to_integer<int>(m[5]), 3);   // Quantize
  EXPECT_EQ(std::to_integer<int>(m[6]), 4);   // bits
  EXPECT_EQ(std::to_integer<int>(m[7]), 3);   // stochastic | absmax
  EXPECT_EQ(gradwire::wire::load_u64(m.data() + 8), 100u);
  EXPECT_EQ(gradwire::wire::load_u32(m.data() + 16), 64u);
  EXPECT_EQ(gradwire::wire::load_u32(m.data() + 20), 0u);
  EXPECT_EQ(gradwire::wire::load_u64(m.data() + 24), 58u);
}

TEST(WireFormat, EveryTruncationIsRejected) {
  for (const char* spec : gwtest::all_specs()) {
    const auto c = gradwire::make_codec(spec);
    const std::size_t n = 200;
    const std::vector<float> x = gwtest::gaussian(n, 3);
    const auto m = gwtest::encode(c, x.data(), n);
    for (std::size_t len = 0; len < m.size(); ++len) {
      std::vector<std::byte> t(m.begin(), m.begin() + static_cast<std::ptrdiff_t>(len));
      expect_rejected(c, t, n, len < 56 ? "truncated header" : "truncated body");
    }
  }
}

TEST(WireFormat, HeaderFieldsAreChecked) {
  const auto c = gradwire::make_codec("q8");
  const std::vector<float> x = gwtest::gaussian(100, 3);
  const auto good = gwtest::encode(c, x.data(), x.size());
  auto m = good;
  m[0] = std::byte{'X'};
  expect_rejected(c, m, 100, "bad magic");
  m = good;
  m[4] = std::byte{2};
  expect_rejected(c, m, 100, "unsupported version 2");
  m = good;
  m[5] = std::byte{1};
  expect_rejected(c, m, 100, "codec id 1");
  m = good;
  m[6] = std::byte{4};
  expect_rejected(c, m, 100, "bits 4");
  m = good;
  m[7] = std::byte{0x80};
  expect_rejected(c, m, 100, "unknown flag");
  m = good;
  put_u64(m, 8, std::numeric_limits<std::uint64_t>::max());
  expect_rejected(c, m, 100, "exceeds 2^40");
  m = good;
  put_u64(m, 8, 99);
  expect_rejected(c, m, 100, "caller expects 100");
  m = good;
  put_u32(m, 16, 1024);
  expect_rejected(c, m, 100, "bucket/parameter 1024");
  m = good;
  put_u64(m, 24, std::numeric_limits<std::uint64_t>::max() - 10);
  expect_rejected(c, m, 100, "truncated body");
  m = good;
  m.push_back(std::byte{0});  // extra trailing bytes are fine, a wrong body size is not
  put_u64(m, 24, gradwire::wire::load_u64(good.data() + 24) + 1);
  expect_rejected(c, m, 100, "body is");
  m = good;
  put_u64(m, 40, 1);
  expect_rejected(c, m, 100, "reserved");
  std::vector<float> y(100);
  EXPECT_THROW(c.decode(nullptr, 0, y.data(), gradwire::DType::Float32, 100), gradwire::Error);
}

TEST(WireFormat, NonFiniteOrNegativeScalesAreRejected) {
  const std::vector<float> x = gwtest::gaussian(100, 3);
  for (const char* spec : {"q8", "q4:scale=absmax", "sign"}) {
    const auto c = gradwire::make_codec(spec);
    const auto good = gwtest::encode(c, x.data(), x.size());
    for (const float bad : {std::numeric_limits<float>::quiet_NaN(),
                            std::numeric_limits<float>::infinity(), -1.0f}) {
      const bool pair = std::string(spec) == "q8";  // (lo, step); the others: one scale
      for (const std::size_t at : {56u, 60u}) {
        if (!pair && at == 60u) continue;
        if (bad == -1.0f && pair && at == 56u) continue;  // lo may be negative
        auto m = good;
        put_f32(m, at, bad);
        expect_rejected(c, m, 100, "bucket");
      }
    }
  }
}

TEST(WireFormat, SparseIndicesAreChecked) {
  const std::size_t n = 1000;
  const std::vector<float> x = gwtest::gaussian(n, 3);
  const auto c = gradwire::make_codec("topk:k=3");
  const auto good = gwtest::encode(c, x.data(), n);
  ASSERT_EQ(good.size(), 56u + 3u * 8u);
  auto m = good;
  put_u32(m, 56 + 4, gradwire::wire::load_u32(m.data() + 56));  // duplicate index
  expect_rejected(c, m, n, "not strictly increasing");
  m = good;
  put_u32(m, 56 + 8, 1000);
  expect_rejected(c, m, n, "out of range");
  m = good;
  put_u32(m, 20, 2);
  expect_rejected(c, m, n, "carries 2 values");
  m = good;
  put_u32(m, 20, 5000);
  expect_rejected(c, m, n, "nnz 5000 exceeds");

  const auto d = gradwire::make_codec("threshold:1.0,index=delta");
  const auto dg = gwtest::encode(d, x.data(), n);
  const std::uint32_t nnz = gradwire::wire::load_u32(dg.data() + 20);
  ASSERT_GT(nnz, 2u);
  m = dg;
  for (std::size_t i = 56; i < 56 + 6; ++i) m[i] = std::byte{0xff};  // 6-byte varint
  expect_rejected(d, m, n, "varint");
  m = dg;
  m[56] = std::byte{0xe7};  // first index 1000 + ...: out of range
  m[57] = std::byte{0x07};
  expect_rejected(d, m, n, "");

  const auto r = gradwire::make_codec("randk:0.1");
  const auto rg = gwtest::encode(r, x.data(), n, 0, 5, 6);
  m = rg;
  put_u64(m, 32, 6);  // another seed selects another number of elements (or other ones)
  const auto y_good = gwtest::decode(r, rg, n);
  try {
    const auto y = gwtest::decode(r, m, n);
    EXPECT_NE(y, y_good);
  } catch (const gradwire::Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::WireFormat);
  }
}

TEST(WireFormat, EncodeChecksItsArguments) {
  const auto c = gradwire::make_codec("q8");
  std::vector<float> x(100);
  std::vector<std::byte> out(c.max_encoded_bytes(100) - 1);
  EXPECT_THROW(c.encode(x.data(), gradwire::DType::Float32, 100, 0, 0, 0, out.data(), out.size()),
               gradwire::Error);
  out.resize(out.size() + 1);
  EXPECT_THROW(c.encode(x.data(), gradwire::DType::Int32, 100, 0, 0, 0, out.data(), out.size()),
               gradwire::Error);
  EXPECT_THROW(c.encode(nullptr, gradwire::DType::Float32, 100, 0, 0, 0, out.data(), out.size()),
               gradwire::Error);
  const auto t = gradwire::make_codec("threshold:0");
  std::vector<std::byte> small(100);
  EXPECT_THROW(t.encode(x.data(), gradwire::DType::Float32, 100, 0, 0, 0, small.data(), small.size()),
               gradwire::Error);
}

}  // namespace
