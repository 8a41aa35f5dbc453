// Parsing of codec spec strings: accepted forms, canonical printing, clear errors.
#include <gtest/gtest.h>

#include <string>

#include "gradwire/codec.hpp"
#include "gradwire/error.hpp"

using gradwire::CodecKind;
using gradwire::parse_codec;

namespace {

std::string error_of(const char* spec) {
  try {
    parse_codec(spec);
  } catch (const gradwire::Error& e) {
    EXPECT_EQ(e.code(), gradwire::ErrorCode::InvalidArgument) << spec;
    return e.what();
  }
  ADD_FAILURE() << "'" << spec << "' parsed";
  return {};
}

TEST(CodecSpec, ParsesTheDocumentedForms) {
  EXPECT_EQ(parse_codec("none").kind, CodecKind::None);
  EXPECT_EQ(parse_codec("fp16").bits, 16u);
  EXPECT_EQ(parse_codec("bf16").kind, CodecKind::Bf16);
  const struct { const char* name; unsigned bits; } qs[] = {{"q1", 1}, {"q2", 2}, {"q4", 4}, {"q8", 8}};
  for (const auto& [name, b] : qs) {
    const auto s = parse_codec(name);
    EXPECT_EQ(s.kind, CodecKind::Quantize);
    EXPECT_EQ(s.bits, b);
    EXPECT_EQ(s.bucket, 512u);
    EXPECT_EQ(s.round, gradwire::Rounding::Stochastic);
    EXPECT_EQ(s.scale, gradwire::ScaleMode::MinMax);
  }
  const auto q = parse_codec("q4:bucket=1024,round=nearest,scale=absmax");
  EXPECT_EQ(q.bucket, 1024u);
  EXPECT_EQ(q.round, gradwire::Rounding::Nearest);
  EXPECT_EQ(q.scale, gradwire::ScaleMode::AbsMax);
  EXPECT_EQ(parse_codec("sign").bits, 1u);
  EXPECT_DOUBLE_EQ(parse_codec("topk:0.01").ratio, 0.01);
  EXPECT_EQ(parse_codec("topk:k=1000").k, 1000u);
  EXPECT_DOUBLE_EQ(parse_codec("randk:0.01").ratio, 0.01);
  EXPECT_FLOAT_EQ(parse_codec("threshold:1e-3").threshold, 1e-3f);
  const auto t = parse_codec("topk:0.05,index=delta,value=f16");
  EXPECT_EQ(t.index, gradwire::IndexCoding::Delta);
  EXPECT_EQ(t.value, gradwire::ValueType::F16);
  EXPECT_EQ(t.bits, 16u);
}

TEST(CodecSpec, CanonicalStringParsesBackToTheSameSpec) {
  for (const char* s : {"none", "fp16", "bf16", "q8", "q1:bucket=64,round=nearest", "sign:bucket=256",
                        "q2:scale=absmax", "topk:0.01", "topk:k=7,index=delta", "randk:0.3,value=f16",
                        "threshold:0.125,value=f16"}) {
    const auto a = parse_codec(s);
    EXPECT_EQ(parse_codec(a.to_string()), a) << s << " -> " << a.to_string();
  }
}

TEST(CodecSpec, ErrorsNameTheBadTokenAndWhatIsAccepted) {
  std::string e = error_of("q3");
  EXPECT_NE(e.find("'q3'"), std::string::npos) << e;
  EXPECT_NE(e.find("q8, q4, q2, q1"), std::string::npos) << e;
  e = error_of("q4:bukket=1024");
  EXPECT_NE(e.find("bukket=1024"), std::string::npos) << e;
  EXPECT_NE(e.find("round=stochastic|nearest"), std::string::npos) << e;
  e = error_of("q4:round=up");
  EXPECT_NE(e.find("round=up"), std::string::npos) << e;
  EXPECT_NE(e.find("nearest"), std::string::npos) << e;
  e = error_of("q4:bucket=100");
  EXPECT_NE(e.find("multiple of 64"), std::string::npos) << e;
  e = error_of("topk");
  EXPECT_NE(e.find("ratio"), std::string::npos) << e;
  e = error_of("topk:1.5");
  EXPECT_NE(e.find("(0, 1]"), std::string::npos) << e;
  e = error_of("topk:abc");
  EXPECT_NE(e.find("'abc'"), std::string::npos) << e;
  e = error_of("threshold:-1");
  EXPECT_NE(e.find(">= 0"), std::string::npos) << e;
  error_of("fp16:bucket=64");
  error_of("sign:round=nearest");
  error_of("randk:0.1,index=delta");
  error_of("topk:k=0");
  error_of("q8:scale=");
  error_of("");
  error_of("randk:nan");
}

TEST(CodecSpec, CodecExposesItsShape) {
  const auto q = gradwire::make_codec("q4:bucket=128");
  EXPECT_EQ(q.bits(), 4u);
  EXPECT_EQ(q.bucket_size(), 128u);
  EXPECT_FALSE(q.sparse());
  EXPECT_EQ(q.max_encoded_bytes(1000), 56u + 8u * 8u + 500u);
  const auto t = gradwire::make_codec("topk:0.01");
  EXPECT_TRUE(t.sparse());
  EXPECT_EQ(t.bucket_size(), 0u);
  EXPECT_EQ(t.topk_count(1000), 10u);
  EXPECT_EQ(t.topk_count(1), 1u);
  EXPECT_EQ(gradwire::make_codec("topk:k=5").topk_count(3), 3u);
  gradwire::CodecSpec bad = parse_codec("q4");
  bad.bits = 3;
  EXPECT_THROW(gradwire::Codec{bad}, gradwire::Error);
}

}  // namespace
