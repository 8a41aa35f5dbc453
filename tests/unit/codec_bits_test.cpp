// Pins the exact output bits of every codec: encoded messages, residuals after error
// feedback, and decoded values, as FNV-1a hashes recorded from the scalar implementation
// (commit "codec tests: golden hashes of every output bit"); the stochastic quantizers'
// entries were re-recorded once, deliberately, when stochastic rounding went from 32 to 16
// random bits per element (issue 13; docs/codecs.md), and only they changed. Performance work
// on the encoders and decoders must leave every hash unchanged; the CUDA kernels are compared with
// the host bit for bit (tests/gpu), so these hashes pin them too.
//
// To print the table (only after a deliberate, documented format change):
//   GW_PRINT_GOLDEN=1 gw_unit_tests --gtest_filter='*CodecBits.*Generic'
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "codec/isa.hpp"
#include "codec_test_util.hpp"
#include "gradwire/codec.hpp"
#include "math/half.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#define GW_TEST_MXCSR 1
#endif

namespace {

using gradwire::DType;

std::uint64_t fnv(const void* p, std::size_t n, std::uint64_t h = 1469598103934665603ull) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

// Deterministic inputs over many binades, with a few exact ties and repeated values, so
// rounding boundaries and bucket ranges of every kind occur. Splitmix64, no <random>.
std::uint64_t mix(std::uint64_t& s) {
  std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::vector<float> input(std::size_t n, std::uint64_t seed, bool specials) {
  std::vector<float> x(n);
  std::uint64_t s = seed;
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint64_t r = mix(s);
    const std::uint32_t kind = static_cast<std::uint32_t>(r >> 60);
    float v;
    if (kind < 10) {  // gradient-like: magnitudes 2^-20 .. 2^0
      const std::uint32_t e = 107u + static_cast<std::uint32_t>((r >> 32) % 21u);
      v = gradwire::math::bits_float((e << 23) | static_cast<std::uint32_t>(r & 0x7fffffu));
    } else if (kind < 12) {  // exact multiples of a small step: grid ties, fp16 ties
      v = static_cast<float>(static_cast<std::int32_t>(r % 4097u) - 2048) * 0.0009765625f;
    } else if (kind < 13) {
      v = 0.0f;
    } else if (kind < 14) {  // wide range
      const std::uint32_t e = 90u + static_cast<std::uint32_t>((r >> 32) % 50u);
      v = gradwire::math::bits_float((e << 23) | static_cast<std::uint32_t>(r & 0x7fffffu));
    } else {
      v = i > 0 ? x[i - 1] : 1.0f;
    }
    if (specials && (r & 0xf00u) == 0) {  // fp16 subnormals, half-way cases, overflow, NaN, inf
      const std::uint32_t k = static_cast<std::uint32_t>((r >> 12) % 6u);
      const std::uint32_t m = static_cast<std::uint32_t>(r >> 20) & 0x7fffffu;
      const std::uint32_t bits[6] = {(103u << 23) | m, (110u << 23) | (m & ~0xfffu) | 0x1000u,
                                     0x477fe000u | (m & 0x1fffu), 0x7f800000u,
                                     0x7fc00000u | (m & 0x3fffffu), 0x33000000u | (m & 0x3u)};
      v = gradwire::math::bits_float(bits[k]);
    }
    if (r & 1u) v = -v;
    x[i] = v;
  }
  return x;
}

// Hash of encode (message, residual) and of every decode form, for one spec and shape.
std::uint64_t run(const std::string& spec, DType in_t, std::size_t n, std::uint64_t offset,
                  bool ef, std::uint64_t seed) {
  const auto c = gradwire::make_codec(spec);
  const bool specials = c.kind() == gradwire::CodecKind::Fp16 ||
                        c.kind() == gradwire::CodecKind::Bf16 ||
                        c.kind() == gradwire::CodecKind::None || c.sparse();
  std::vector<float> x = input(n, seed, specials);
  std::vector<std::uint16_t> x16(n);
  const void* in = x.data();
  if (in_t != DType::Float32) {
    for (std::size_t i = 0; i < n; ++i) {
      x16[i] = in_t == DType::Float16 ? gradwire::math::float_to_half(x[i])
                                      : gradwire::math::float_to_bf16(x[i]);
    }
    in = x16.data();
  }
  std::vector<float> res;
  if (ef) {
    res = input(n, seed + 99, false);
    for (auto& e : res) e *= 0.001f;
  }
  std::vector<std::byte> msg(c.max_encoded_bytes(n));
  msg.resize(c.encode(in, in_t, n, offset, seed, 3 + seed, msg.data(), msg.size(),
                      ef ? res.data() : nullptr));
  std::uint64_t h = fnv(msg.data(), msg.size());
  if (ef) h = fnv(res.data(), 4 * n, h);
  std::vector<float> y(n);
  c.decode(msg.data(), msg.size(), y.data(), DType::Float32, n);
  h = fnv(y.data(), 4 * n, h);
  std::vector<std::uint16_t> y16(n);
  c.decode(msg.data(), msg.size(), y16.data(), DType::Float16, n);
  h = fnv(y16.data(), 2 * n, h);
  c.decode(msg.data(), msg.size(), y16.data(), DType::BFloat16, n);
  h = fnv(y16.data(), 2 * n, h);
  std::vector<float> acc = input(n, seed + 7, false);
  c.decode_add(msg.data(), msg.size(), acc.data(), n);
  return fnv(acc.data(), 4 * n, h);
}

const char* const kSpecs[] = {
    "none", "fp16", "bf16", "q8", "q4", "q2", "q1", "q8:round=nearest", "q4:round=nearest",
    "q2:round=nearest", "q1:round=nearest", "q8:scale=absmax", "q4:scale=absmax,round=nearest",
    "q8:bucket=64", "q4:bucket=320", "q8:bucket=1024,round=nearest", "q1:bucket=128,scale=absmax",
    "sign", "sign:bucket=64", "topk:0.01", "topk:0.1,index=delta,value=f16", "randk:0.05",
    "threshold:1e-3,value=f16"};

struct Shape {
  std::size_t n;
  std::uint64_t offset;
};
const Shape kShapes[] = {{1, 0}, {77, 3}, {4096, 0}, {10001, 4097}, {70000, 6}};

// Golden hashes: key "spec|dtype|n|offset|ef".
const std::map<std::string, std::uint64_t>& golden();

// Every build of the hot loops (baseline; AVX2 and AVX-512 where the CPU has them;
// codec/isa.hpp). A level the CPU lacks runs the widest it has.
using gradwire::detail::KernelLevel;
class CodecBits : public ::testing::TestWithParam<KernelLevel> {
 protected:
  void SetUp() override { gradwire::detail::limit_kernels(GetParam()); }
  void TearDown() override { gradwire::detail::limit_kernels(KernelLevel::Avx512); }
};

TEST_P(CodecBits, EveryOutputBitMatchesTheRecordedHashes) {
  const bool print = std::getenv("GW_PRINT_GOLDEN") != nullptr && GetParam() == KernelLevel::Generic;
  const DType types[] = {DType::Float32, DType::Float16, DType::BFloat16};
  std::uint64_t seed = 1;
  for (const char* spec : kSpecs) {
    for (const DType t : types) {
      for (const Shape& sh : kShapes) {
        for (const bool ef : {false, true}) {
          std::string key = spec;
          key.append("|").append(gradwire::dtype_name(t)).append("|");
          key.append(std::to_string(sh.n)).append("|").append(std::to_string(sh.offset));
          key.append(ef ? "|ef" : "|-");
          const std::uint64_t h = run(spec, t, sh.n, sh.offset, ef, seed++);
          if (print) {
            std::printf("      {\"%s\", 0x%016llxull},\n", key.c_str(),
                        static_cast<unsigned long long>(h));
            continue;
          }
          const auto it = golden().find(key);
          ASSERT_NE(it, golden().end()) << key;
          EXPECT_EQ(it->second, h) << key;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Kernels, CodecBits,
                         ::testing::Values(KernelLevel::Generic, KernelLevel::Avx2, KernelLevel::Avx512),
                         [](const ::testing::TestParamInfo<KernelLevel>& i) {
                           return i.param == KernelLevel::Generic ? std::string("Generic")
                                  : i.param == KernelLevel::Avx2  ? std::string("Avx2")
                                                                  : std::string("Avx512");
                         });

// The conversions against the straightforward branchy definitions they replaced, over every
// input: all 2^32 floats and all 2^16 halves.
std::uint16_t ref_float_to_half(float f) {
  const std::uint32_t x = gradwire::math::float_bits(f);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  const std::uint32_t a = x & 0x7fffffffu;
  if (a >= 0x7f800000u) {
    return static_cast<std::uint16_t>(sign | 0x7c00u | (a > 0x7f800000u ? 0x200u : 0u));
  }
  if (a >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);
  if (a < 0x38800000u) {
    if (a < 0x33000000u) return static_cast<std::uint16_t>(sign);
    const std::uint32_t e = a >> 23;
    const std::uint32_t m = (a & 0x7fffffu) | 0x800000u;
    const std::uint32_t shift = 126u - e;
    std::uint32_t q = m >> shift;
    const std::uint32_t rem = m & ((1u << shift) - 1u);
    const std::uint32_t halfway = 1u << (shift - 1u);
    if (rem > halfway || (rem == halfway && (q & 1u))) ++q;
    return static_cast<std::uint16_t>(sign | q);
  }
  const std::uint32_t r = a + 0xfffu + ((a >> 13) & 1u) - 0x38000000u;
  return static_cast<std::uint16_t>(sign | (r >> 13));
}

std::uint32_t ref_half_to_float_bits(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t e = (h >> 10) & 0x1fu;
  const std::uint32_t m = h & 0x3ffu;
  if (e == 0) {
    const float v = static_cast<float>(m) * 5.9604644775390625e-8f;
    return gradwire::math::float_bits(sign ? -v : v);
  }
  if (e == 31) return sign | 0x7f800000u | (m << 13);
  return sign | ((e + 112u) << 23) | (m << 13);
}

TEST(HalfBits, ConversionsMatchTheReferenceOnEveryInput) {
  for (std::uint32_t h = 0; h < 0x10000u; ++h) {
    ASSERT_EQ(gradwire::math::float_bits(gradwire::math::half_to_float(static_cast<std::uint16_t>(h))),
              ref_half_to_float_bits(static_cast<std::uint16_t>(h)))
        << std::hex << h;
  }
  std::uint64_t bad = 0;
  std::uint32_t first = 0;
  std::uint32_t u = 0;
  do {
    const float f = gradwire::math::bits_float(u);
    if (gradwire::math::float_to_half(f) != ref_float_to_half(f)) {
      if (bad++ == 0) first = u;
    }
  } while (++u != 0);
  EXPECT_EQ(bad, 0u) << "first mismatch at float bits 0x" << std::hex << first;
}

// Flush-to-zero and denormals-are-zero on (x86), for the scope: some applications set them.
struct FlushDenormals {
#ifdef GW_TEST_MXCSR
  unsigned saved = _mm_getcsr();
  FlushDenormals() { _mm_setcsr(saved | 0x8040u); }
  ~FlushDenormals() { _mm_setcsr(saved); }
#endif
};

// Floats whose fp16 result is subnormal or zero, float32 subnormals, both signs: where the
// rounding depends on how the hardware treats tiny values.
template <class F>
void for_tiny_floats(F&& f) {
  for (const std::uint32_t sign : {0u, 0x80000000u}) {
    for (std::uint32_t a = 0; a < 0x00800000u; ++a) f(sign | a);
    for (std::uint32_t a = 0x33000000u - 4u; a < 0x38800004u; ++a) f(sign | a);
  }
}

TEST(HalfBits, ConversionsMatchTheReferenceWithDenormalsFlushed) {
  const FlushDenormals ftz;
  std::uint64_t bad = 0;
  for_tiny_floats([&](std::uint32_t u) {
    bad += gradwire::math::float_to_half(gradwire::math::bits_float(u)) != ref_float_to_half(gradwire::math::bits_float(u));
  });
  EXPECT_EQ(bad, 0u);
  for (std::uint32_t h = 0; h < 0x10000u; ++h) {
    ASSERT_EQ(gradwire::math::float_bits(gradwire::math::half_to_float(static_cast<std::uint16_t>(h))),
              ref_half_to_float_bits(static_cast<std::uint16_t>(h)))
        << std::hex << h;
  }
}

// The fp16 codec on the widest kernels the CPU has (F16C on AVX2 machines): every float32
// input encodes to the reference bits, every half decodes (and decode_adds) to the
// reference float; the tiny inputs again with denormals flushed.
std::uint64_t fp16_encode_mismatches(const gradwire::Codec& c, std::uint64_t first, std::uint64_t end,
                                     bool tiny_only) {
  constexpr std::size_t kN = 1u << 20;
  std::vector<float> x(kN);
  std::vector<std::byte> msg(c.max_encoded_bytes(kN));
  std::vector<std::uint16_t> got(kN);
  std::uint64_t bad = 0;
  auto check = [&](std::size_t n) {
    const std::size_t bytes = c.encode(x.data(), DType::Float32, n, 0, 1, 0, msg.data(), msg.size());
    // math::float_to_half equals the reference on every input (HalfBits tests), and it
    // vectorizes here, which keeps this sweep short under the sanitizers.
    std::memcpy(got.data(), msg.data() + bytes - 2 * n, 2 * n);
    for (std::size_t i = 0; i < n; ++i) bad += got[i] != gradwire::math::float_to_half(x[i]);
  };
  std::size_t n = 0;
  auto push = [&](std::uint32_t u) {
    x[n++] = gradwire::math::bits_float(u);
    if (n == kN) {
      check(n);
      n = 0;
    }
  };
  if (tiny_only) {
    for_tiny_floats(push);
  } else {
    for (std::uint64_t u = first; u < end; ++u) push(static_cast<std::uint32_t>(u));
  }
  if (n > 0) check(n);
  return bad;
}

std::uint64_t fp16_decode_mismatches(const gradwire::Codec& c) {
  constexpr std::size_t kN = 0x10000u + 5u;  // every half, plus a tail past a group of 8
  std::vector<float> zeros(kN, 0.0f);
  std::vector<std::byte> msg(c.max_encoded_bytes(kN));
  msg.resize(c.encode(zeros.data(), DType::Float32, kN, 0, 1, 0, msg.data(), msg.size()));
  std::byte* body = msg.data() + msg.size() - 2 * kN;
  for (std::size_t i = 0; i < kN; ++i) {
    const auto h = static_cast<std::uint16_t>(i & 0xffffu);
    std::memcpy(body + 2 * i, &h, 2);
  }
  std::vector<float> y(kN), acc(kN, 0.0f);
  c.decode(msg.data(), msg.size(), y.data(), DType::Float32, kN);
  c.decode_add(msg.data(), msg.size(), acc.data(), kN);
  std::uint64_t bad = 0;
  for (std::size_t i = 0; i < kN; ++i) {
    const std::uint32_t want = ref_half_to_float_bits(static_cast<std::uint16_t>(i & 0xffffu));
    bad += gradwire::math::float_bits(y[i]) != want;
    const float sum = 0.0f + gradwire::math::bits_float(want);
    bad += gradwire::math::float_bits(acc[i]) != gradwire::math::float_bits(sum) &&
           !(sum != sum && acc[i] != acc[i]);  // NaN + 0: any NaN (as the scalar add)
  }
  return bad;
}

// A quarter of the 2^32 inputs per test, so each stays well inside the ctest timeout
// under the sanitizers.
class Fp16CodecBits : public ::testing::TestWithParam<int> {};

TEST_P(Fp16CodecBits, MatchesTheReferenceOnEveryInput) {
  const auto c = gradwire::make_codec("fp16");
  const std::uint64_t q = static_cast<std::uint64_t>(GetParam());
  EXPECT_EQ(fp16_encode_mismatches(c, q << 30, (q + 1) << 30, false), 0u);
  if (q == 0) {
    EXPECT_EQ(fp16_decode_mismatches(c), 0u);
    const FlushDenormals ftz;
    EXPECT_EQ(fp16_encode_mismatches(c, 0, 0, true), 0u);
    EXPECT_EQ(fp16_decode_mismatches(c), 0u);
  }
}

INSTANTIATE_TEST_SUITE_P(Quarters, Fp16CodecBits, ::testing::Range(0, 4));

const std::map<std::string, std::uint64_t>& golden() {
  static const std::map<std::string, std::uint64_t> g = {
#include "codec_bits_golden.inc"
  };
  return g;
}

}  // namespace
