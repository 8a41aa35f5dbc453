// Device-side pieces shared by the dense and sparse kernels: the status words the kernels
// report through (cuda::Status reads them when the caller waits), message header checks, and
// element loads/stores by dtype. Internal to cuda/.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "codec/wire.hpp"
#include "gradwire/codec.hpp"
#include "math/half.hpp"

namespace gradwire::cuda::dev {

// What went wrong, first failure wins. Host messages in status.cu.
enum Code : unsigned {
  kOk = 0,
  kNonFinite,      // encode: a non-finite input (quantize/sign); where = bucket start
  kRange,          // encode: a bucket's hi - lo or mean overflows float; where = bucket start
  kBadScale,       // decode: non-finite or negative scale; where = scale index
  kMagic,
  kVersion,        // got
  kKind,           // got, want
  kBits,           // got, want
  kUnknownFlags,   // got
  kFlags,          // got, want
  kCountRange,     // got
  kCount,          // got, want
  kParam,          // got, want
  kReserved,
  kNnzRange,       // got (nnz), want (count)
  kTruncatedBody,  // got (body_bytes), want (bytes the buffer holds)
  kDenseNnz,       // got
  kBodySize,       // got (body_bytes), want (what the fields imply)
  kTopkCount,      // got (nnz), want (k)
  kIndexRange,     // where = position, got = index, want = count
  kIndexOrder,     // where = position
  kVarintTruncated,
  kVarintLong,     // where = byte position
  kRandkCount,     // got (nnz), want (what the seed selects)
  kRandkOffset,
  kCapacity,       // encode: got (message bytes), want (capacity)
  kCodeCount
};

// The words behind a cuda::Status. code is set once (atomicCAS from kOk); the winner then
// fills the details. bytes: the size of the last encoded message.
struct Words {
  unsigned code;
  unsigned pad;
  unsigned long long where, got, want, bytes;
};

__device__ inline void fail(Words* s, unsigned code, std::uint64_t where = 0, std::uint64_t got = 0,
                            std::uint64_t want = 0) {
  if (atomicCAS(&s->code, 0u, code) == 0u) {
    s->where = where;
    s->got = got;
    s->want = want;
  }
}

// Reads as volatile: a kernel earlier in the stream may have set it.
__device__ inline bool failed(const Words* s) {
  return *static_cast<const volatile unsigned*>(&s->code) != kOk;
}

// The header bytes the encoder writes, passed by value to a kernel (no host copy to enqueue).
struct HeaderImage {
  unsigned char b[wire::kHeaderBytes];
};

// What a decoder expects of a message's header (wire::read_header's checks, on the device).
struct Expect {
  std::uint64_t count;
  std::uint64_t in_bytes;     // the buffer the caller gave (>= the header: checked on the host)
  std::uint64_t body_bytes;   // dense: the exact body size; sparse: unused
  std::uint64_t topk_k;       // top-k: the k of count; else unused
  std::uint32_t param;
  std::uint8_t kind, bits, flags;
  bool dense, randk, topk;
};

__device__ inline std::uint32_t ld_u32(const unsigned char* p) {
  return p[0] | (std::uint32_t{p[1]} << 8) | (std::uint32_t{p[2]} << 16) | (std::uint32_t{p[3]} << 24);
}
__device__ inline std::uint64_t ld_u64(const unsigned char* p) {
  return ld_u32(p) | (std::uint64_t{ld_u32(p + 4)} << 32);
}

struct DevHeader {
  std::uint64_t count, body_bytes, seed, step, offset;
  std::uint32_t param, nnz;
};

// The checks of wire::read_header, in the same order, plus the dense/top-k size rules.
// Returns false (after recording the failure) when the message must not be decoded.
__device__ inline bool check_header(const unsigned char* in, const Expect& e, Words* st, DevHeader* out) {
  constexpr std::uint64_t kMaxCount = wire::kMaxCount;
  if (ld_u32(in) != wire::kMagic) return fail(st, kMagic), false;
  if (in[4] != wire::kVersion) return fail(st, kVersion, 0, in[4], wire::kVersion), false;
  if (in[5] != e.kind) return fail(st, kKind, 0, in[5], e.kind), false;
  if (in[6] != e.bits) return fail(st, kBits, 0, in[6], e.bits), false;
  const unsigned flags = in[7];
  if ((flags & ~unsigned{wire::kKnownFlags}) != 0) return fail(st, kUnknownFlags, 0, flags), false;
  if ((flags & ~unsigned{wire::kStochastic}) != (e.flags & ~unsigned{wire::kStochastic})) {
    return fail(st, kFlags, 0, flags, e.flags), false;
  }
  DevHeader h;
  h.count = ld_u64(in + 8);
  h.param = ld_u32(in + 16);
  h.nnz = ld_u32(in + 20);
  h.body_bytes = ld_u64(in + 24);
  h.seed = ld_u64(in + 32);
  h.step = ld_u64(in + 40);
  h.offset = ld_u64(in + 48);
  if (h.count > kMaxCount) return fail(st, kCountRange, 0, h.count), false;
  if (h.count != e.count) return fail(st, kCount, 0, h.count, e.count), false;
  if (!e.randk && h.param != e.param) return fail(st, kParam, 0, h.param, e.param), false;
  if (!e.randk && (h.seed | h.step | h.offset) != 0) return fail(st, kReserved), false;
  if (h.nnz > h.count) return fail(st, kNnzRange, 0, h.nnz, h.count), false;
  if (h.body_bytes > e.in_bytes - wire::kHeaderBytes) {
    return fail(st, kTruncatedBody, 0, h.body_bytes, e.in_bytes - wire::kHeaderBytes), false;
  }
  if (e.dense) {
    if (h.nnz != 0) return fail(st, kDenseNnz, 0, h.nnz), false;
    if (h.body_bytes != e.body_bytes) return fail(st, kBodySize, 0, h.body_bytes, e.body_bytes), false;
  }
  if (e.topk && h.nnz != e.topk_k) return fail(st, kTopkCount, 0, h.nnz, e.topk_k), false;
  if (out) *out = h;
  return true;
}

// dtype codes: DType values (0 float32, 2 float16, 3 bfloat16).
template <int DT>
__device__ inline float load1(const void* p, std::size_t i) {
  if constexpr (DT == 2) return math::half_to_float(static_cast<const std::uint16_t*>(p)[i]);
  if constexpr (DT == 3) return math::bf16_to_float(static_cast<const std::uint16_t*>(p)[i]);
  if constexpr (DT == 0) return static_cast<const float*>(p)[i];
  return 0.0f;
}
template <int DT>
__device__ inline void store1(void* p, std::size_t i, float v) {
  if constexpr (DT == 2) static_cast<std::uint16_t*>(p)[i] = math::float_to_half(v);
  if constexpr (DT == 3) static_cast<std::uint16_t*>(p)[i] = math::float_to_bf16(v);
  if constexpr (DT == 0) static_cast<float*>(p)[i] = v;
}

// Elements i..i+3 (m of them valid, m <= 4). vec: the buffer is aligned for one 16-byte
// (float32) or 8-byte (16-bit types) access per four elements. RO: the buffer is read-only
// for the whole kernel, so the loads may go through the non-coherent read-only path.
template <int DT, bool RO = true>
__device__ inline void load4(const void* p, std::size_t i, unsigned m, bool vec, float v[4]) {
  if (vec && m == 4) {
    if constexpr (DT == 0) {
      const float4* a = reinterpret_cast<const float4*>(static_cast<const float*>(p) + i);
      const float4 q = RO ? __ldg(a) : *a;
      v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
    } else {
      const uint2 q = __ldg(reinterpret_cast<const uint2*>(static_cast<const std::uint16_t*>(p) + i));
      const std::uint16_t h[4] = {static_cast<std::uint16_t>(q.x), static_cast<std::uint16_t>(q.x >> 16),
                                  static_cast<std::uint16_t>(q.y), static_cast<std::uint16_t>(q.y >> 16)};
#pragma unroll
      for (int c = 0; c < 4; ++c) v[c] = DT == 2 ? math::half_to_float(h[c]) : math::bf16_to_float(h[c]);
    }
    return;
  }
#pragma unroll
  for (unsigned c = 0; c < 4; ++c) v[c] = c < m ? load1<DT>(p, i + c) : 0.0f;
}

template <int DT>
__device__ inline void store4(void* p, std::size_t i, unsigned m, bool vec, const float v[4]) {
  if (vec && m == 4) {
    if constexpr (DT == 0) {
      *reinterpret_cast<float4*>(static_cast<float*>(p) + i) = make_float4(v[0], v[1], v[2], v[3]);
    } else {
      std::uint32_t h[4];
#pragma unroll
      for (int c = 0; c < 4; ++c) h[c] = DT == 2 ? math::float_to_half(v[c]) : math::float_to_bf16(v[c]);
      *reinterpret_cast<uint2*>(static_cast<std::uint16_t*>(p) + i) = make_uint2(h[0] | (h[1] << 16), h[2] | (h[3] << 16));
    }
    return;
  }
#pragma unroll
  for (unsigned c = 0; c < 4; ++c) {
    if (c < m) store1<DT>(p, i + c, v[c]);
  }
}

// The residual or accumulator: float32, same alignment rule, written by the same kernel.
__device__ inline void load4f(const float* p, std::size_t i, unsigned m, bool vec, float v[4]) {
  load4<0, false>(p, i, m, vec, v);
}
__device__ inline void store4f(float* p, std::size_t i, unsigned m, bool vec, const float v[4]) {
  store4<0>(p, i, m, vec, v);
}

__device__ inline float ld_f32(const unsigned char* p) {
  float v;
  memcpy(&v, p, 4);
  return v;
}
__device__ inline void st_f32(unsigned char* p, float v) { memcpy(p, &v, 4); }

}  // namespace gradwire::cuda::dev
