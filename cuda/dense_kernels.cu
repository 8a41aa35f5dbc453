// The dense codecs (none, fp16, bf16, q1..q8, sign) as CUDA kernels. Each kernel is one pass
// over its input; the math is src/math's, compiled with --fmad=false, so the bytes are the
// host codec's.
//
// Memory: the kernels are bandwidth-bound, so each is written to move only the bytes the
// codec needs (encode: x, plus the residual read and written with error feedback, and the
// message written; decode: the message read, the output written, plus the accumulator read
// for decode_add) with 16-byte (float32) or 8-byte (16-bit) accesses per four elements, and
// several accesses in flight per thread before any arithmetic waits on them.
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "codec/detail.hpp"
#include "codec/wire.hpp"
#include "kernels.cuh"
#include "launch.hpp"
#include "math/philox.hpp"
#include "math/quant.hpp"

namespace gradwire::cuda {

namespace {

using namespace dev;

constexpr int kThreads = 256;
constexpr int kGroupsPerThread = 4;  // four groups of four elements: 64 bytes of float32 in flight

bool aligned(const void* p, std::uintptr_t a) { return reinterpret_cast<std::uintptr_t>(p) % a == 0; }

unsigned blocks_for(std::size_t work, std::size_t per_block) {
  const std::size_t b = (work + per_block - 1) / per_block;
  return static_cast<unsigned>(b == 0 ? 1 : (b < (1u << 30) ? b : (1u << 30)));
}

__device__ void write_header(const HeaderImage& h, unsigned char* out, Words* st, std::uint64_t bytes) {
  for (std::size_t i = 0; i < wire::kHeaderBytes; ++i) out[i] = h.b[i];
  st->bytes = bytes;
}

// ---- none / fp16 / bf16 -------------------------------------------------------------------

// KIND: 0 none (float32 out), 1 fp16, 2 bf16.
template <int KIND>
__device__ inline void cast_store(unsigned char* body, std::size_t i, unsigned m, bool vec, const float v[4],
                                  float back[4]) {
  if constexpr (KIND == 0) {
#pragma unroll
    for (int c = 0; c < 4; ++c) back[c] = v[c];
    if (vec && m == 4) {
      auto* p = reinterpret_cast<float2*>(body + 4 * i);  // the body is 8-byte aligned, not 16
      p[0] = make_float2(v[0], v[1]);
      p[1] = make_float2(v[2], v[3]);
    } else {
      for (unsigned c = 0; c < m; ++c) st_f32(body + 4 * (i + c), v[c]);
    }
  } else {
    std::uint32_t w[4];
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      w[c] = KIND == 1 ? math::float_to_half(v[c]) : math::float_to_bf16(v[c]);
      back[c] = KIND == 1 ? math::half_to_float(static_cast<std::uint16_t>(w[c]))
                          : math::bf16_to_float(static_cast<std::uint16_t>(w[c]));
    }
    if (vec && m == 4) {
      *reinterpret_cast<uint2*>(body + 2 * i) = make_uint2(w[0] | (w[1] << 16), w[2] | (w[3] << 16));
    } else {
      for (unsigned c = 0; c < m; ++c) {
        body[2 * (i + c)] = static_cast<unsigned char>(w[c]);
        body[2 * (i + c) + 1] = static_cast<unsigned char>(w[c] >> 8);
      }
    }
  }
}

template <int DT, int KIND>
__global__ void __launch_bounds__(kThreads) cast_encode(const void* x, float* e, std::size_t n,
                                                        unsigned char* out, HeaderImage h, std::uint64_t bytes,
                                                        bool vin, bool vout, Words* st) {
  if (failed(st)) return;
  if (blockIdx.x == 0 && threadIdx.x == 0) write_header(h, out, st, bytes);
  unsigned char* body = out + wire::kHeaderBytes;
  const std::size_t base = std::size_t{blockIdx.x} * kThreads * kGroupsPerThread;
  float v[kGroupsPerThread][4];
  // All loads first (x and residual of four groups), then the arithmetic and stores.
#pragma unroll
  for (int u = 0; u < kGroupsPerThread; ++u) {
    const std::size_t i = 4 * (base + u * kThreads + threadIdx.x);
    const unsigned m = i < n ? static_cast<unsigned>(n - i < 4 ? n - i : 4) : 0;
    load4<DT>(x, i, m, vin, v[u]);
    if (e && m) {
      float r[4];
      load4f(e, i, m, vin, r);
#pragma unroll
      for (int c = 0; c < 4; ++c) v[u][c] += r[c];
    }
  }
#pragma unroll
  for (int u = 0; u < kGroupsPerThread; ++u) {
    const std::size_t i = 4 * (base + u * kThreads + threadIdx.x);
    if (i >= n) break;
    const unsigned m = static_cast<unsigned>(n - i < 4 ? n - i : 4);
    float back[4];
    cast_store<KIND>(body, i, m, vout, v[u], back);
    if (e) {
      float r[4];
#pragma unroll
      for (int c = 0; c < 4; ++c) r[c] = KIND == 0 ? 0.0f : v[u][c] - back[c];
      store4f(e, i, m, vin, r);
    }
  }
}

// Checks the header in every block (56 bytes, cached), so that a bad message writes nothing.
__device__ bool block_header_ok(const unsigned char* in, const Expect& ex, Words* st) {
  __shared__ int ok;
  if (threadIdx.x == 0) ok = !failed(st) && check_header(in, ex, st, nullptr);
  __syncthreads();
  return ok != 0;
}

template <int DT, int KIND, bool ADD>
__global__ void __launch_bounds__(kThreads) cast_decode(const unsigned char* in, Expect ex, void* out, bool vin,
                                                        bool vout, Words* st) {
  if (!block_header_ok(in, ex, st)) return;
  const unsigned char* body = in + wire::kHeaderBytes;
  const std::size_t n = ex.count;
  const std::size_t base = std::size_t{blockIdx.x} * kThreads * kGroupsPerThread;
#pragma unroll
  for (int u = 0; u < kGroupsPerThread; ++u) {
    const std::size_t i = 4 * (base + u * kThreads + threadIdx.x);
    if (i >= n) break;
    const unsigned m = static_cast<unsigned>(n - i < 4 ? n - i : 4);
    float v[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if constexpr (KIND == 0) {
      if (vin && m == 4) {
        const float2 a = __ldg(reinterpret_cast<const float2*>(body + 4 * i));
        const float2 b = __ldg(reinterpret_cast<const float2*>(body + 4 * i + 8));
        v[0] = a.x, v[1] = a.y, v[2] = b.x, v[3] = b.y;
      } else {
        for (unsigned c = 0; c < m; ++c) v[c] = ld_f32(body + 4 * (i + c));
      }
    } else {
      std::uint16_t w[4] = {0, 0, 0, 0};
      if (vin && m == 4) {
        const uint2 q = __ldg(reinterpret_cast<const uint2*>(body + 2 * i));
        w[0] = static_cast<std::uint16_t>(q.x), w[1] = static_cast<std::uint16_t>(q.x >> 16);
        w[2] = static_cast<std::uint16_t>(q.y), w[3] = static_cast<std::uint16_t>(q.y >> 16);
      } else {
        for (unsigned c = 0; c < m; ++c) w[c] = static_cast<std::uint16_t>(body[2 * (i + c)] | (body[2 * (i + c) + 1] << 8));
      }
#pragma unroll
      for (int c = 0; c < 4; ++c) v[c] = KIND == 1 ? math::half_to_float(w[c]) : math::bf16_to_float(w[c]);
    }
    if constexpr (ADD) {
      float a[4];
      load4f(static_cast<float*>(out), i, m, vout, a);
#pragma unroll
      for (int c = 0; c < 4; ++c) a[c] += v[c];
      store4f(static_cast<float*>(out), i, m, vout, a);
    } else {
      store4<DT>(out, i, m, vout, v);
    }
  }
}

// ---- q1..q8 and sign ----------------------------------------------------------------------

struct QArgs {
  const void* x;
  float* e;
  std::size_t n;
  std::uint32_t bucket, bits;
  int mode;  // 0 min-max, 1 abs-max, 2 sign
  bool stochastic, vin, vout;
  unsigned char* out;  // the message: header, scales, payload
  std::size_t payload_off;
  std::uint64_t goff, seed, step, bytes;
  HeaderImage h;
  Words* st;
};

__device__ inline float warp_min(float v) {
  for (int o = 16; o > 0; o >>= 1) {
    const float w = __shfl_xor_sync(0xffffffffu, v, o);
    v = w < v ? w : v;
  }
  return v;
}
__device__ inline float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) {
    const float w = __shfl_xor_sync(0xffffffffu, v, o);
    v = w > v ? w : v;
  }
  return v;
}
__device__ inline std::uint32_t warp_umax(std::uint32_t v) {
  for (int o = 16; o > 0; o >>= 1) {
    const std::uint32_t w = __shfl_xor_sync(0xffffffffu, v, o);
    v = w > v ? w : v;
  }
  return v;
}

// The 8-lane sum of math::bucket_stats in its exact order: lane j of the warp (j < 8) holds
// s[j]; the result, ((s0+s1)+(s2+s3))+((s4+s5)+(s6+s7)), lands in lane 0.
__device__ inline float combine8(float s) {
  s += __shfl_down_sync(0xffffffffu, s, 1);  // lanes 0, 2, 4, 6: s0+s1, s2+s3, ...
  s += __shfl_down_sync(0xffffffffu, s, 2);  // lanes 0, 4: (s0+s1)+(s2+s3), (s4+s5)+(s6+s7)
  s += __shfl_down_sync(0xffffffffu, s, 4);  // lane 0
  return s;
}

// The stochastic-rounding bits of global elements g0 .. g0+3 (math::rounding_bits: half-word
// g % 8 of block g / 8): one Philox block when g0 % 8 <= 4, else two.
__device__ inline void rounding_bits4(std::uint64_t seed, std::uint64_t step, std::uint64_t g0, std::uint32_t w[4]) {
  const math::U32x4 a = math::philox_block(seed, step, math::Stream::Rounding, g0 >> 3);
  const unsigned k = static_cast<unsigned>(g0 & 7u);
  math::U32x4 b{{0u, 0u, 0u, 0u}};
  if (k > 4) b = math::philox_block(seed, step, math::Stream::Rounding, (g0 >> 3) + 1);
  const std::uint32_t all[6] = {a.v[0], a.v[1], a.v[2], a.v[3], b.v[0], b.v[1]};
#pragma unroll
  for (unsigned c = 0; c < 4; ++c) {
    const unsigned h = k + c;  // half-word of the pair (a, b), < 11
    // Selects rather than an indexed load, so `all` stays in registers.
    std::uint32_t word = all[0];
#pragma unroll
    for (unsigned d = 1; d < 6; ++d) word = (h >> 1) == d ? all[d] : word;
    w[c] = (h & 1u) ? word >> 16 : word & 0xffffu;
  }
}

// One bucket's scales and grid, computed by the whole warp from its statistics. Returns false
// (after recording why) when the bucket cannot be encoded.
struct BucketGrid {
  math::Grid g;
  float scale;  // sign
};

// Quantizes four values of a bucket (m valid), updates their residual and writes their codes.
// Every lane of the warp calls it (q1 and sign pair lanes through a shuffle).
__device__ inline void emit4(const QArgs& a, const BucketGrid& bg, std::size_t i, unsigned m, float v[4],
                             unsigned lane) {
  const std::uint32_t levels = math::levels_of(a.bits);
  const float lf = static_cast<float>(levels);
  std::uint32_t code[4] = {0, 0, 0, 0};
  float back[4];
  if (a.mode == 2) {
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      code[c] = math::sign_bit(v[c]);
      back[c] = math::sign_value(code[c], bg.scale);
    }
  } else {
    std::uint32_t w[4] = {0, 0, 0, 0};
    if (a.stochastic && m) rounding_bits4(a.seed, a.step, a.goff + i, w);
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const float t = math::grid_position(v[c], bg.g, lf);
      code[c] = a.stochastic ? math::round_stochastic(t, w[c]) : math::round_nearest(t);
      back[c] = math::dequantize(code[c], bg.g);
    }
  }
#pragma unroll
  for (unsigned c = 0; c < 4; ++c) code[c] = c < m ? code[c] : 0u;  // the last byte is zero-padded
  if (a.e && m) {
    float r[4];
#pragma unroll
    for (int c = 0; c < 4; ++c) r[c] = v[c] - back[c];
    store4f(a.e, i, m, a.vin, r);
  }
  std::uint32_t word = 0;
#pragma unroll
  for (int c = 0; c < 4; ++c) word |= code[c] << (c * a.bits);
  unsigned char* payload = a.out + a.payload_off;
  if (a.bits == 1) {
    // Four 1-bit codes: half a byte. The even lane (elements 8q..8q+3) takes its odd
    // neighbour's four (8q+4..8q+7) as the high nibble. All lanes shuffle.
    const std::uint32_t hi = __shfl_down_sync(0xffffffffu, word, 1);
    const unsigned mh = __shfl_down_sync(0xffffffffu, m, 1);
    if ((lane & 1u) == 0 && m) payload[i / 8] = static_cast<unsigned char>(word | (mh ? hi << 4 : 0u));
    return;
  }
  if (m == 0) return;
  const std::size_t at = i * a.bits / 8;
  const unsigned nbytes = (m * a.bits + 7) / 8;  // 4 * bits / 8 when m == 4
  if (a.vout && m == 4 && a.bits == 8) {
    *reinterpret_cast<std::uint32_t*>(payload + at) = word;
  } else if (a.vout && m == 4 && a.bits == 4) {
    *reinterpret_cast<std::uint16_t*>(payload + at) = static_cast<std::uint16_t>(word);
  } else {
    for (unsigned b = 0; b < nbytes; ++b) payload[at + b] = static_cast<unsigned char>(word >> (8 * b));
  }
}

// A warp per bucket (grid-stride over buckets). Buckets of up to 128 R elements stay in
// registers between the statistics and the quantization, so x (and the residual) are read
// once; larger buckets read their elements beyond 128 R twice (the second time mostly from
// L2). R = 4 covers the default bucket of 512 with 16 registers of values per lane.
template <int DT, int R>
__global__ void __launch_bounds__(kThreads) q_encode(QArgs a) {
  extern __shared__ float sabs[];  // sign only: |v| of each warp's bucket, for the ordered sum
  if (failed(a.st)) return;
  if (blockIdx.x == 0 && threadIdx.x == 0) write_header(a.h, a.out, a.st, a.bytes);
  const unsigned lane = threadIdx.x & 31u;
  float* my_abs = sabs + (threadIdx.x >> 5) * (128 * R);
  const std::size_t nb = (a.n + a.bucket - 1) / a.bucket;
  const std::size_t warps = (std::size_t{gridDim.x} * kThreads) >> 5;
  const std::uint32_t levels = math::levels_of(a.bits);
  unsigned char* scales = a.out + wire::kHeaderBytes;
  for (std::size_t b = (std::size_t{blockIdx.x} * kThreads + threadIdx.x) >> 5; b < nb; b += warps) {
    const std::size_t s = b * a.bucket;
    const std::uint32_t m = static_cast<std::uint32_t>(a.n - s < a.bucket ? a.n - s : a.bucket);
    const bool held = m <= 128u * R;
    float v[R][4];
    float lo = 3.4028234663852886e38f, hi = -3.4028234663852886e38f;
    std::uint32_t am = 0;
    auto load_chunk = [&](std::uint32_t e0, float out4[4]) -> unsigned {
      const unsigned cnt = e0 < m ? (m - e0 < 4 ? m - e0 : 4) : 0;
      if (cnt == 0) {
        out4[0] = out4[1] = out4[2] = out4[3] = 0.0f;
        return 0;
      }
      load4<DT>(a.x, s + e0, cnt, a.vin, out4);
      if (a.e) {
        float r[4];
        load4f(a.e, s + e0, cnt, a.vin, r);
#pragma unroll
        for (int c = 0; c < 4; ++c) out4[c] += r[c];
      }
      return cnt;
    };
    auto stats = [&](const float q[4], unsigned cnt) {
#pragma unroll
      for (unsigned c = 0; c < 4; ++c) {
        if (c >= cnt) break;
        lo = q[c] < lo ? q[c] : lo;
        hi = q[c] > hi ? q[c] : hi;
        const std::uint32_t ab = math::abs_bits(q[c]);
        am = ab > am ? ab : am;
      }
    };
    // Pass 1: statistics.
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const std::uint32_t e0 = 4u * (lane + 32u * r);
      const unsigned cnt = load_chunk(e0, v[r]);
      stats(v[r], cnt);
      if (a.mode == 2 && held) {
#pragma unroll
        for (unsigned c = 0; c < 4; ++c) {
          if (c < cnt) my_abs[e0 + c] = math::bits_float(math::abs_bits(v[r][c]));
        }
      }
    }
    for (std::uint32_t e0 = 4u * (lane + 32u * R); e0 < m; e0 += 128u) {  // large buckets only
      float q[4];
      stats(q, load_chunk(e0, q));
    }
    lo = warp_min(lo) + 0.0f;  // -0 -> +0, as math::bucket_stats
    hi = warp_max(hi) + 0.0f;
    am = warp_umax(am);
    BucketGrid bg{};
    if (am >= math::kInfBits) {
      if (lane == 0) fail(a.st, kNonFinite, a.goff + s);
      continue;
    }
    if (a.mode == 2) {
      // Σ|v| in math::bucket_stats' order: lane j < 8 folds elements j, j+8, ... in order.
      __syncwarp();
      float sum = 0.0f;
      if (lane < 8) {
        if (held) {
          for (std::uint32_t i = lane; i < m; i += 8) sum += my_abs[i];
        } else {
          for (std::uint32_t i = lane; i < m; i += 8) {
            float q = load1<DT>(a.x, s + i);
            if (a.e) q += a.e[s + i];
            sum += math::bits_float(math::abs_bits(q));
          }
        }
      }
      sum = combine8(sum);
      bg.scale = __shfl_sync(0xffffffffu, sum, 0) / static_cast<float>(m);
      __syncwarp();  // my_abs is rewritten by the warp's next bucket
      if (!(bg.scale <= 3.4028234663852886e38f)) {
        if (lane == 0) fail(a.st, kRange, a.goff + s);
        continue;
      }
      if (lane == 0) st_f32(scales + 4 * b, bg.scale);
    } else if (a.mode == 1) {
      bg.g = math::grid_absmax(math::bits_float(am), levels);
      if (lane == 0) st_f32(scales + 4 * b, math::bits_float(am));
    } else {
      if (static_cast<double>(hi) - static_cast<double>(lo) > 3.4028234663852886e38) {
        if (lane == 0) fail(a.st, kRange, a.goff + s);
        continue;
      }
      bg.g = math::grid_minmax(lo, hi, levels);
      if (lane == 0) {
        st_f32(scales + 8 * b, bg.g.lo);
        st_f32(scales + 8 * b + 4, bg.g.step);
      }
    }
    // Pass 2: codes, residual, payload.
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const std::uint32_t e0 = 4u * (lane + 32u * r);
      const unsigned cnt = e0 < m ? (m - e0 < 4 ? m - e0 : 4) : 0;
      emit4(a, bg, s + e0, cnt, v[r], lane);
    }
    for (std::uint32_t base = 128u * R; base < m; base += 128u) {  // large buckets only
      const std::uint32_t e0 = base + 4u * lane;
      float q[4];
      const unsigned cnt = load_chunk(e0, q);
      emit4(a, bg, s + e0, cnt, q, lane);
    }
  }
}

// Header and every scale, before any element is written (decoders write nothing for a bad
// message). Every block checks the header, so a header failure is reported before a scale.
__global__ void __launch_bounds__(kThreads) q_validate(const unsigned char* in, Expect ex, std::size_t nscales,
                                                       int mode, Words* st) {
  if (!block_header_ok(in, ex, st)) return;
  const unsigned char* scales = in + wire::kHeaderBytes;
  for (std::size_t k = std::size_t{blockIdx.x} * kThreads + threadIdx.x; k < nscales;
       k += std::size_t{gridDim.x} * kThreads) {
    const float v = ld_f32(scales + 4 * k);
    const bool is_lo = mode == 0 && k % 2 == 0;  // a min-max offset may be negative
    if (!(math::abs_bits(v) < math::kInfBits) || (!is_lo && v < 0.0f)) fail(st, kBadScale, k);
  }
}

// The header check alone, for a buffer too short for the body the codec implies (it always
// fails, with the field that says why).
__global__ void header_only(const unsigned char* in, Expect ex, Words* st) {
  if (!failed(st)) check_header(in, ex, st, nullptr);
}

template <int DT, bool ADD>
__global__ void __launch_bounds__(kThreads) q_decode(const unsigned char* in, std::size_t n, std::uint32_t bucket,
                                                     std::uint32_t bits, int mode, std::size_t payload_off,
                                                     void* out, bool vin, bool vout, Words* st) {
  if (failed(st)) return;  // set by q_validate (or an earlier call)
  const unsigned char* scales = in + wire::kHeaderBytes;
  const unsigned char* payload = in + payload_off;
  const std::uint32_t levels = math::levels_of(bits);
  const std::size_t base = std::size_t{blockIdx.x} * kThreads * kGroupsPerThread;
  std::uint32_t word[kGroupsPerThread];
  // Payload loads of all groups first.
#pragma unroll
  for (int u = 0; u < kGroupsPerThread; ++u) {
    const std::size_t i = 4 * (base + u * kThreads + threadIdx.x);
    word[u] = 0;
    if (i >= n) continue;
    const unsigned m = static_cast<unsigned>(n - i < 4 ? n - i : 4);
    const std::size_t at = i * bits / 8;
    if (bits == 8 && vin && m == 4) {
      word[u] = __ldg(reinterpret_cast<const std::uint32_t*>(payload + at));
    } else if (bits == 4 && vin && m == 4) {
      word[u] = __ldg(reinterpret_cast<const std::uint16_t*>(payload + at));
    } else {
      const unsigned nbytes = (m * bits + 7) / 8;
      for (unsigned b = 0; b < nbytes; ++b) word[u] |= std::uint32_t{payload[at + b]} << (8 * b);
      if (bits == 1) word[u] = (payload[at] >> (i % 8)) & 0xfu;
    }
  }
#pragma unroll
  for (int u = 0; u < kGroupsPerThread; ++u) {
    const std::size_t i = 4 * (base + u * kThreads + threadIdx.x);
    if (i >= n) break;
    const unsigned m = static_cast<unsigned>(n - i < 4 ? n - i : 4);
    // Buckets are multiples of 64, so a group never straddles two, and i / 64 fits 32 bits
    // below 2^38 elements: a 32-bit division (a 64-bit one is a long software sequence).
    const std::size_t b = (i >> 38) == 0 ? static_cast<std::uint32_t>(i >> 6) / (bucket >> 6) : i / bucket;
    float v[4];
    if (mode == 2) {
      const float scale = ld_f32(scales + 4 * b);
#pragma unroll
      for (int c = 0; c < 4; ++c) v[c] = math::sign_value((word[u] >> c) & 1u, scale);
    } else {
      const math::Grid g = mode == 1 ? math::grid_absmax(ld_f32(scales + 4 * b), levels)
                                     : math::Grid{ld_f32(scales + 8 * b), ld_f32(scales + 8 * b + 4), 0.0f};
#pragma unroll
      for (int c = 0; c < 4; ++c) v[c] = math::dequantize((word[u] >> (c * bits)) & levels, g);
    }
    if constexpr (ADD) {
      float acc[4];
      load4f(static_cast<float*>(out), i, m, vout, acc);
#pragma unroll
      for (int c = 0; c < 4; ++c) acc[c] += v[c];
      store4f(static_cast<float*>(out), i, m, vout, acc);
    } else {
      store4<DT>(out, i, m, vout, v);
    }
  }
}

// ---- dispatch -----------------------------------------------------------------------------

template <class F>
void by_dtype(DType t, F&& f) {
  switch (t) {
    case DType::Float16: return f(std::integral_constant<int, 2>{});
    case DType::BFloat16: return f(std::integral_constant<int, 3>{});
    default: return f(std::integral_constant<int, 0>{});
  }
}
template <class F>
void by_kind(CodecKind k, F&& f) {
  if (k == CodecKind::Fp16) return f(std::integral_constant<int, 1>{});
  if (k == CodecKind::Bf16) return f(std::integral_constant<int, 2>{});
  return f(std::integral_constant<int, 0>{});
}

int mode_of(const CodecSpec& s) {
  if (s.kind == CodecKind::Sign) return 2;
  return s.scale == ScaleMode::AbsMax ? 1 : 0;
}

std::size_t elem_align(DType t) { return t == DType::Float32 ? 16 : 8; }

// Alignment of the input and residual for 4-element vector accesses.
bool vec_in(const void* x, DType t, const float* e) {
  return aligned(x, elem_align(t)) && (e == nullptr || aligned(e, 16));
}

}  // namespace

std::size_t dense_encode(const Codec& c, const EncodeCall& a) {
  const CodecSpec& s = c.spec();
  wire::Header h = wire::header_for(s, a.count);
  h.body_bytes = detail::dense_body_bytes(s, a.count);
  HeaderImage img;
  wire::write_header(h, reinterpret_cast<std::byte*>(img.b));
  const std::uint64_t bytes = wire::kHeaderBytes + h.body_bytes;
  auto* out = reinterpret_cast<unsigned char*>(a.out);
  const bool vin = vec_in(a.in, a.dtype, a.residual);
  const bool vout = aligned(out, 8);
  if (s.kind == CodecKind::Quantize || s.kind == CodecKind::Sign) {
    QArgs q{a.in, a.residual, a.count, s.bucket, s.bits, mode_of(s), s.round == Rounding::Stochastic,
            vin, vout, out, wire::kHeaderBytes + 4 * detail::scale_floats(s, a.count),
            a.global_offset, a.seed, a.step, bytes, img, a.status};
    const std::size_t nb = (a.count + s.bucket - 1) / s.bucket;
    const unsigned blocks = blocks_for(nb, kThreads / 32);
    by_dtype(a.dtype, [&](auto dt) {
      auto launch = [&](auto r) {
        constexpr int R = decltype(r)::value;
        const std::size_t smem = q.mode == 2 ? sizeof(float) * 128 * R * (kThreads / 32) : 0;
        q_encode<decltype(dt)::value, R><<<blocks, kThreads, smem, a.stream>>>(q);
      };
      if (s.bucket <= 128) {
        launch(std::integral_constant<int, 1>{});
      } else if (s.bucket <= 256) {
        launch(std::integral_constant<int, 2>{});
      } else if (s.bucket <= 512) {
        launch(std::integral_constant<int, 4>{});
      } else {
        launch(std::integral_constant<int, 8>{});
      }
    });
  } else {
    const unsigned blocks = blocks_for((a.count + 3) / 4, std::size_t{kThreads} * kGroupsPerThread);
    by_dtype(a.dtype, [&](auto dt) {
      by_kind(s.kind, [&](auto k) {
        cast_encode<decltype(dt)::value, decltype(k)::value>
            <<<blocks, kThreads, 0, a.stream>>>(a.in, a.residual, a.count, out, img, bytes, vin, vout, a.status);
      });
    });
  }
  check_cuda(cudaGetLastError(), "CUDA encode kernel launch");
  return bytes;
}

void dense_decode(const Codec& c, const DecodeCall& a) {
  const CodecSpec& s = c.spec();
  const wire::Header eh = wire::header_for(s, a.count);
  Expect ex{};
  ex.count = a.count;
  ex.in_bytes = a.in_bytes;
  ex.body_bytes = detail::dense_body_bytes(s, a.count);
  ex.param = eh.param;
  ex.kind = static_cast<std::uint8_t>(eh.kind);
  ex.bits = eh.bits;
  ex.flags = eh.flags;
  ex.dense = true;
  const auto* in = reinterpret_cast<const unsigned char*>(a.in);
  if (a.in_bytes < wire::kHeaderBytes + ex.body_bytes) {
    header_only<<<1, 1, 0, a.stream>>>(in, ex, a.status);
    check_cuda(cudaGetLastError(), "CUDA decode kernel launch");
    return;
  }
  const bool vin = aligned(in, 8);
  const bool vout = aligned(a.out, a.add ? 16 : elem_align(a.dtype));
  const unsigned blocks = blocks_for((a.count + 3) / 4, std::size_t{kThreads} * kGroupsPerThread);
  if (s.kind == CodecKind::Quantize || s.kind == CodecKind::Sign) {
    const std::size_t ns = detail::scale_floats(s, a.count);
    q_validate<<<blocks_for(ns, kThreads * 8), kThreads, 0, a.stream>>>(in, ex, ns, mode_of(s), a.status);
    const std::size_t poff = wire::kHeaderBytes + 4 * ns;
    by_dtype(a.dtype, [&](auto dt) {
      if (a.add) {
        q_decode<0, true><<<blocks, kThreads, 0, a.stream>>>(in, a.count, s.bucket, s.bits, mode_of(s), poff,
                                                             a.out, vin, vout, a.status);
      } else {
        q_decode<decltype(dt)::value, false><<<blocks, kThreads, 0, a.stream>>>(
            in, a.count, s.bucket, s.bits, mode_of(s), poff, a.out, vin, vout, a.status);
      }
    });
  } else {
    by_kind(s.kind, [&](auto k) {
      if (a.add) {
        cast_decode<0, decltype(k)::value, true><<<blocks, kThreads, 0, a.stream>>>(in, ex, a.out, vin, vout,
                                                                                  a.status);
      } else {
        by_dtype(a.dtype, [&](auto dt) {
          cast_decode<decltype(dt)::value, decltype(k)::value, false>
              <<<blocks, kThreads, 0, a.stream>>>(in, ex, a.out, vin, vout, a.status);
        });
      }
    });
  }
  check_cuda(cudaGetLastError(), "CUDA decode kernel launch");
}

}  // namespace gradwire::cuda
