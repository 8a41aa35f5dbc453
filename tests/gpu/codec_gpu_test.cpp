// The CUDA kernels against the host codec, bit for bit, on fresh random inputs: encoded bytes,
// residuals, decoded values, and which malformed messages are rejected. Skips (with the
// reason) where no GPU is present.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "codec_cuda.hpp"
#include "gradwire/codec.hpp"
#include "gradwire/error.hpp"
#include "math/half.hpp"

namespace {

using gradwire::DType;

std::string no_gpu_reason() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) return std::string("no usable CUDA device: ") + cudaGetErrorString(e);
  if (n == 0) return "no CUDA device present";
  return {};
}

#define GW_REQUIRE_GPU()                                        \
  do {                                                          \
    const std::string why = no_gpu_reason();                    \
    if (!why.empty()) GTEST_SKIP() << why;                      \
  } while (0)

// Device bytes with 64 bytes of slack on each side, so that tests can offset pointers to
// take the kernels' unaligned paths.
struct DeviceBytes {
  unsigned char* p = nullptr;
  explicit DeviceBytes(std::size_t n) { EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&p), n + 128), cudaSuccess); }
  ~DeviceBytes() { cudaFree(p); }
  DeviceBytes(const DeviceBytes&) = delete;
  DeviceBytes& operator=(const DeviceBytes&) = delete;
  unsigned char* at(std::size_t off) const { return p + 64 + off; }
};

void put(void* d, const void* h, std::size_t n) {
  if (n > 0) {
    ASSERT_EQ(cudaMemcpy(d, h, n, cudaMemcpyHostToDevice), cudaSuccess);
    // A pageable copy may return before its DMA lands, and the tests enqueue on non-blocking
    // streams, which do not wait for the legacy default stream: wait for it here.
    ASSERT_EQ(cudaStreamSynchronize(cudaStreamLegacy), cudaSuccess);
  }
}
template <class T>
std::vector<T> get(const void* d, std::size_t n) {
  std::vector<T> v(n);
  if (n > 0) {
    EXPECT_EQ(cudaMemcpy(v.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
  }
  return v;
}

bool accepts_non_finite(const gradwire::Codec& c) {
  return c.sparse() || c.kind() == gradwire::CodecKind::None || c.kind() == gradwire::CodecKind::Fp16 ||
         c.kind() == gradwire::CodecKind::Bf16;
}

// Inputs: 0 normal, 1 many ties in magnitude (±k/2, zeros of both signs), 2 normal with NaN
// and infinities (codecs that carry them only).
std::vector<float> make_input(std::mt19937_64& rng, std::size_t n, int kind) {
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> x(n);
  for (auto& v : x) v = d(rng);
  if (kind == 1) {
    for (auto& v : x) v = std::round(v * 2.0f) / 2.0f;
    for (std::size_t i = 0; i < n; i += 5) x[i] = i % 2 ? -0.0f : 0.0f;
  } else if (kind == 2) {
    const float inf = std::numeric_limits<float>::infinity();
    for (std::size_t i = 3; i < n; i += 997) x[i] = std::numeric_limits<float>::quiet_NaN();
    for (std::size_t i = 5; i < n; i += 1499) x[i] = i % 2 ? inf : -inf;
  }
  return x;
}

// Element-wise equality of two buffers of dtype t, bit for bit except that any NaN equals
// any NaN: IEEE 754 leaves the payload and sign of an arithmetic NaN result to the hardware
// (x86 propagates the operand's, a GPU returns its canonical 0x7fffffff), so only the NaN-ness
// of x + residual, acc + NaN, inf - inf can be compared. Returns the first index that
// differs, or n.
std::size_t first_difference(const void* a, const void* b, DType t, std::size_t n) {
  const std::size_t sz = gradwire::dtype_size(t);
  for (std::size_t i = 0; i < n; ++i) {
    const auto* pa = static_cast<const unsigned char*>(a) + i * sz;
    const auto* pb = static_cast<const unsigned char*>(b) + i * sz;
    if (std::memcmp(pa, pb, sz) == 0) continue;
    float fa, fb;
    if (t == DType::Float32) {
      std::memcpy(&fa, pa, 4);
      std::memcpy(&fb, pb, 4);
    } else {
      std::uint16_t ha, hb;
      std::memcpy(&ha, pa, 2);
      std::memcpy(&hb, pb, 2);
      fa = t == DType::Float16 ? gradwire::math::half_to_float(ha) : gradwire::math::bf16_to_float(ha);
      fb = t == DType::Float16 ? gradwire::math::half_to_float(hb) : gradwire::math::bf16_to_float(hb);
    }
    if (!(std::isnan(fa) && std::isnan(fb))) return i;
  }
  return n;
}

// The two messages carry the same content: byte for byte where no NaN is involved; with
// NaNs, the same size and the same decoded values (by the host decoder), NaN-equal.
void expect_same_message(const gradwire::Codec& c, const std::vector<std::byte>& host,
                         const std::vector<std::byte>& dev, std::size_t n, bool nan_payloads_may_differ) {
  ASSERT_EQ(dev.size(), host.size());
  if (!nan_payloads_may_differ) {
    ASSERT_EQ(std::memcmp(dev.data(), host.data(), host.size()), 0) << "encoded bytes differ";
    return;
  }
  std::vector<float> a(n), b(n);
  c.decode(host.data(), host.size(), a.data(), DType::Float32, n);
  c.decode(dev.data(), dev.size(), b.data(), DType::Float32, n);
  ASSERT_EQ(first_difference(a.data(), b.data(), DType::Float32, n), n) << "decoded messages differ";
}

class GpuCodec : public ::testing::TestWithParam<const char*> {};

TEST_P(GpuCodec, KernelsMatchTheHostCodecBitForBit) {
  GW_REQUIRE_GPU();
  const gradwire::Codec c = gradwire::make_codec(GetParam());
  std::mt19937_64 rng(std::random_device{}());  // fresh inputs every run; seed printed on failure
  const std::uint64_t seed = rng();
  rng.seed(seed);
  gradwire::cuda::Status st;
  for (const int kind : {0, 1, 2}) {
    if (kind == 2 && !accepts_non_finite(c)) continue;
    for (const DType dt : {DType::Float32, DType::Float16, DType::BFloat16}) {
      for (const std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{67}, std::size_t{1000}, std::size_t{100003}}) {
        for (const bool ef : {false, true}) {
          for (const std::size_t mis : {std::size_t{0}, std::size_t{1}}) {  // 1: unaligned buffers
            SCOPED_TRACE(std::string(GetParam()) + " input " + std::to_string(kind) + " dtype " +
                         std::string(gradwire::dtype_name(dt)) + " n=" + std::to_string(n) + " ef=" +
                         std::to_string(ef) + " misaligned=" + std::to_string(mis) + " seed=" + std::to_string(seed));
            const std::vector<float> x = make_input(rng, n, kind);
            std::normal_distribution<float> d(0.0f, 0.01f);
            std::vector<float> res(n);
            for (auto& v : res) v = d(rng);
            std::vector<std::uint16_t> x16(n);
            for (std::size_t i = 0; i < n; ++i) {
              x16[i] = dt == DType::Float16 ? gradwire::math::float_to_half(x[i]) : gradwire::math::float_to_bf16(x[i]);
            }
            const void* hin = dt == DType::Float32 ? static_cast<const void*>(x.data()) : x16.data();
            const std::size_t esize = gradwire::dtype_size(dt), in_bytes = n * esize;
            const std::size_t cap = c.max_encoded_bytes(n);
            const std::uint64_t off = rng() % 1000, s = rng(), step = rng() % 100;

            std::vector<std::byte> hmsg(cap);
            std::vector<float> hres = res;
            const std::size_t hbytes = c.encode(hin, dt, n, off, s, step, hmsg.data(), cap, ef ? hres.data() : nullptr);

            DeviceBytes din(in_bytes), dmsg(cap), dres(4 * n), dout(4 * n);
            unsigned char* pin = din.at(mis * esize);
            auto* pres = reinterpret_cast<float*>(dres.at(mis * 4));
            auto* pmsg = reinterpret_cast<std::byte*>(dmsg.at(mis));  // odd address: byte-wise path
            auto* pout = reinterpret_cast<float*>(dout.at(mis * 4));
            put(pin, hin, in_bytes);
            put(pres, res.data(), 4 * n);
            const std::size_t now = gradwire::cuda::encode_async(c, pin, dt, n, off, s, step, pmsg, cap,
                                                                 ef ? pres : nullptr, st, nullptr);
            const std::size_t gbytes = st.check(nullptr);
            ASSERT_EQ(gbytes, hbytes);
            if (!c.sparse()) {
              ASSERT_EQ(now, hbytes) << "dense sizes are known at enqueue";
            }
            // With NaN input, x + residual is a NaN whose bits the hardware picks.
            const bool nan_bits = kind == 2 && ef;
            hmsg.resize(hbytes);
            expect_same_message(c, hmsg, get<std::byte>(pmsg, gbytes), n, nan_bits);
            if (HasFatalFailure()) return;
            if (ef) {
              const auto gres = get<float>(pres, n);
              ASSERT_EQ(first_difference(gres.data(), hres.data(), DType::Float32, n), n) << "residuals differ";
              if (kind != 2) {
                ASSERT_EQ(std::memcmp(gres.data(), hres.data(), n * 4), 0);
              }
            }

            // Decode into each dtype, and decode_add (twice the float32 decode).
            for (const DType ot : {DType::Float32, DType::Float16, DType::BFloat16}) {
              const std::size_t osz = gradwire::dtype_size(ot);
              std::vector<unsigned char> hy(n * osz), junk(n * osz, 0x5a);
              c.decode(hmsg.data(), hbytes, hy.data(), ot, n);
              unsigned char* po = dout.at(mis * osz);
              put(po, junk.data(), n * osz);  // decode must overwrite every element
              gradwire::cuda::decode_async(c, pmsg, gbytes, po, ot, n, st, nullptr);
              st.check(nullptr);
              ASSERT_EQ(first_difference(get<unsigned char>(po, n * osz).data(), hy.data(), ot, n), n)
                  << "decoded values differ (" << gradwire::dtype_name(ot) << ")";
              if (kind != 2) {
                ASSERT_EQ(std::memcmp(get<unsigned char>(po, n * osz).data(), hy.data(), n * osz), 0);
              }
            }
            std::vector<float> hy(n);
            c.decode(hmsg.data(), hbytes, hy.data(), DType::Float32, n);
            put(pout, hy.data(), 4 * n);
            gradwire::cuda::decode_add_async(c, pmsg, gbytes, pout, n, st, nullptr);
            st.check(nullptr);
            std::vector<float> twice = hy;
            c.decode_add(hmsg.data(), hbytes, twice.data(), n);
            const auto g2 = get<float>(pout, n);
            ASSERT_EQ(first_difference(g2.data(), twice.data(), DType::Float32, n), n) << "decode_add differs";
            if (kind != 2) {
              ASSERT_EQ(std::memcmp(g2.data(), twice.data(), 4 * n), 0);
            }
          }
        }
      }
    }
  }
}

// Random corruptions of a valid message: the device decoder rejects exactly what the host
// decoder rejects (before writing anything), and decodes the rest to the same bits.
TEST_P(GpuCodec, DeviceDecoderRejectsWhatTheHostRejects) {
  GW_REQUIRE_GPU();
  const gradwire::Codec c = gradwire::make_codec(GetParam());
  std::mt19937_64 rng(std::random_device{}());
  const std::uint64_t seed = rng();
  rng.seed(seed);
  SCOPED_TRACE(std::string(GetParam()) + " seed=" + std::to_string(seed));
  const std::size_t n = 1000, cap = c.max_encoded_bytes(n);
  const std::vector<float> x = make_input(rng, n, 0);
  std::vector<std::byte> good(cap);
  const std::size_t bytes = c.encode(x.data(), DType::Float32, n, 0, 1, 1, good.data(), cap);
  DeviceBytes dmsg(cap), dout(4 * n);
  auto* pmsg = reinterpret_cast<std::byte*>(dmsg.at(0));
  auto* pout = reinterpret_cast<float*>(dout.at(0));
  gradwire::cuda::Status st;
  // Short buffers: the host-side check, and the device's truncated-body check.
  EXPECT_THROW(gradwire::cuda::decode_async(c, pmsg, 10, pout, DType::Float32, n, st, nullptr), gradwire::Error);
  put(pmsg, good.data(), bytes);
  gradwire::cuda::decode_async(c, pmsg, bytes - 1, pout, DType::Float32, n, st, nullptr);
  EXPECT_THROW(st.check(nullptr), gradwire::Error);
  int rejected = 0;
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<std::byte> msg = good;
    const int flips = 1 + static_cast<int>(rng() % 3);
    for (int f = 0; f < flips; ++f) {
      // Mostly the header, the first scales and the first indices: where the checks are.
      const std::size_t at = rng() % 2 ? rng() % std::min<std::size_t>(bytes, 96) : rng() % bytes;
      msg[at] ^= static_cast<std::byte>(1u << (rng() % 8));
    }
    SCOPED_TRACE("trial " + std::to_string(trial));
    std::vector<float> hy(n, 7.0f);
    bool host_rejects = false;
    try {
      c.decode_add(msg.data(), bytes, hy.data(), n);
    } catch (const gradwire::Error& e) {
      ASSERT_EQ(e.code(), gradwire::ErrorCode::WireFormat) << e.what();
      host_rejects = true;
    }
    put(pmsg, msg.data(), bytes);
    const std::vector<float> sevens(n, 7.0f);
    put(pout, sevens.data(), 4 * n);
    gradwire::cuda::decode_add_async(c, pmsg, bytes, pout, n, st, nullptr);
    bool dev_rejects = false;
    try {
      st.check(nullptr);
    } catch (const gradwire::Error& e) {
      ASSERT_EQ(e.code(), gradwire::ErrorCode::WireFormat) << e.what();
      dev_rejects = true;
    }
    ASSERT_EQ(dev_rejects, host_rejects);
    const auto g = get<float>(pout, n);
    if (dev_rejects) {
      ++rejected;
      ASSERT_EQ(std::memcmp(g.data(), sevens.data(), 4 * n), 0) << "a rejected message wrote elements";
    } else {
      // A flipped exponent can make a NaN value: acc + NaN's bits are the hardware's.
      ASSERT_EQ(first_difference(g.data(), hy.data(), DType::Float32, n), n);
    }
  }
  EXPECT_GT(rejected, 0) << "no corruption was rejected: the checks did not run";
}

INSTANTIATE_TEST_SUITE_P(Codecs, GpuCodec,
                         ::testing::Values("none", "fp16", "bf16", "q8", "q4", "q2", "q1", "q8:round=nearest",
                                           "q1:round=nearest", "q4:scale=absmax", "q8:scale=absmax,round=nearest",
                                           "q2:bucket=64", "q8:bucket=256", "q4:bucket=1024", "q8:bucket=4096",
                                           "sign", "sign:bucket=128", "sign:bucket=4096", "topk:0.01",
                                           "topk:0.1,index=delta", "topk:k=7,value=f16",
                                           "topk:0.01,index=delta,value=f16", "randk:0.01", "randk:0.2,value=f16",
                                           "threshold:1.5", "threshold:0.5,index=delta,value=f16"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& ch : s) {
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return s;
                         });

// The asynchronous contract: calls queue without waiting, check() reports the first failure
// once and clears it, and work enqueued after a failure is skipped until then.
TEST(GpuCodecAsync, FailuresAreReportedAtCheckAndLaterWorkIsSkipped) {
  GW_REQUIRE_GPU();
  const gradwire::Codec q8 = gradwire::make_codec("q8");
  const std::size_t n = 4096, cap = q8.max_encoded_bytes(n);
  std::vector<float> x(n, 0.25f);
  x[1234] = std::numeric_limits<float>::infinity();
  DeviceBytes din(4 * n), dmsg(cap), dmsg2(cap);
  put(din.at(0), x.data(), 4 * n);
  cudaStream_t s = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  gradwire::cuda::Status st;
  auto* m1 = reinterpret_cast<std::byte*>(dmsg.at(0));
  auto* m2 = reinterpret_cast<std::byte*>(dmsg2.at(0));
  std::vector<unsigned char> marker(cap, 0xab);
  put(m2, marker.data(), cap);
  EXPECT_EQ(gradwire::cuda::encode_async(q8, din.at(0), DType::Float32, n, 0, 1, 1, m1, cap, nullptr, st, s), cap);
  // Queued behind the failure: must not run.
  gradwire::cuda::encode_async(q8, din.at(0), DType::Float32, 1000, 0, 1, 1, m2, cap, nullptr, st, s);
  try {
    st.check(s);
    FAIL() << "non-finite input was not reported";
  } catch (const gradwire::Error& e) {
    EXPECT_EQ(e.code(), gradwire::ErrorCode::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("global index 1024"), std::string::npos) << e.what();  // its bucket
  }
  EXPECT_EQ(get<unsigned char>(m2, cap), marker) << "work queued after a failure ran";
  // Cleared: the next calls succeed and check() returns the last message's size.
  x[1234] = 1.0f;
  put(din.at(0), x.data(), 4 * n);
  gradwire::cuda::encode_async(q8, din.at(0), DType::Float32, n, 0, 1, 1, m1, cap, nullptr, st, s);
  gradwire::cuda::encode_async(q8, din.at(0), DType::Float32, 1000, 0, 1, 1, m2, cap, nullptr, st, s);
  EXPECT_EQ(st.check(s), q8.max_encoded_bytes(1000));
  // Host-visible argument errors are thrown at enqueue.
  EXPECT_THROW(gradwire::cuda::encode_async(q8, din.at(0), DType::Float32, n, 0, 1, 1, m1, cap - 1, nullptr, st, s),
               gradwire::Error);
  EXPECT_THROW(gradwire::cuda::encode_async(q8, din.at(0), DType::Int32, n, 0, 1, 1, m1, cap, nullptr, st, s),
               gradwire::Error);
  cudaStreamDestroy(s);
}

// A sparse message larger than the caller's buffer is a recorded failure, not an overflow.
TEST(GpuCodecAsync, SparseEncodeChecksCapacityOnTheDevice) {
  GW_REQUIRE_GPU();
  const gradwire::Codec th = gradwire::make_codec("threshold:0");
  const std::size_t n = 1000, cap = 56 + 8 * 10;  // room for 10 entries; all 1000 pass
  std::vector<float> x(n, 1.0f);
  DeviceBytes din(4 * n), dmsg(cap);
  put(din.at(0), x.data(), 4 * n);
  std::vector<unsigned char> marker(64, 0xcd);
  put(dmsg.at(cap), marker.data(), 64);  // just past the buffer
  gradwire::cuda::Status st;
  gradwire::cuda::encode_async(th, din.at(0), DType::Float32, n, 0, 1, 1, reinterpret_cast<std::byte*>(dmsg.at(0)),
                               cap, nullptr, st, nullptr);
  EXPECT_THROW(st.check(nullptr), gradwire::Error);
  EXPECT_EQ(get<unsigned char>(dmsg.at(cap), 64), marker) << "wrote past the caller's buffer";
}

}  // namespace
