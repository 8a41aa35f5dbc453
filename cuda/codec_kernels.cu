// CUDA kernels of the dense codecs. Each calls the host+device functions of src/math, so the
// bytes match the host codec's (compiled with --fmad=false, see CMakeLists.txt).
#include <cstdint>
#include <string>
#include <vector>

#include "codec/detail.hpp"
#include "codec/wire.hpp"
#include "codec_cuda.hpp"
#include "gradwire/error.hpp"
#include "math/half.hpp"
#include "math/philox.hpp"
#include "math/quant.hpp"

namespace gradwire::cuda {

namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    throw Error(ErrorCode::Cuda, std::string(what) + ": " + cudaGetErrorString(e));
  }
}

// Element access by dtype code: 0 float32, 2 float16, 3 bfloat16 (DType values).
__device__ float load(const void* p, int dt, std::size_t i) {
  if (dt == 2) return math::half_to_float(static_cast<const std::uint16_t*>(p)[i]);
  if (dt == 3) return math::bf16_to_float(static_cast<const std::uint16_t*>(p)[i]);
  return static_cast<const float*>(p)[i];
}
__device__ void store(void* p, int dt, std::size_t i, float v) {
  if (dt == 2) {
    static_cast<std::uint16_t*>(p)[i] = math::float_to_half(v);
  } else if (dt == 3) {
    static_cast<std::uint16_t*>(p)[i] = math::float_to_bf16(v);
  } else {
    static_cast<float*>(p)[i] = v;
  }
}
__device__ float load_f32(const unsigned char* p) {
  float v;
  memcpy(&v, p, 4);
  return v;
}
__device__ void store_f32(unsigned char* p, float v) { memcpy(p, &v, 4); }

struct Src {
  const void* x;
  int dt;
  const float* e;
  std::size_t base;
  __device__ float operator()(std::uint32_t i) const {
    float v = load(x, dt, base + i);
    if (e) v += e[base + i];
    return v;
  }
};

enum Fail : unsigned { kOk = 0, kNonFinite = 1, kRange = 2, kBadScale = 3 };

// kind: 0 none, 1 fp16, 2 bf16.
__global__ void cast_encode(const void* x, int dt, float* e, std::size_t n, int kind,
                            unsigned char* out) {
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n;
       i += std::size_t{gridDim.x} * blockDim.x) {
    float v = load(x, dt, i);
    if (e) v += e[i];
    if (kind == 0) {
      store_f32(out + 4 * i, v);
      if (e) e[i] = 0.0f;
    } else {
      const std::uint16_t w = kind == 1 ? math::float_to_half(v) : math::float_to_bf16(v);
      out[2 * i] = static_cast<unsigned char>(w);
      out[2 * i + 1] = static_cast<unsigned char>(w >> 8);
      if (e) e[i] = v - (kind == 1 ? math::half_to_float(w) : math::bf16_to_float(w));
    }
  }
}

__global__ void cast_decode(const unsigned char* in, std::size_t n, int kind, void* out, int dt,
                            bool add) {
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n;
       i += std::size_t{gridDim.x} * blockDim.x) {
    float v;
    if (kind == 0) {
      v = load_f32(in + 4 * i);
    } else {
      const std::uint16_t w = static_cast<std::uint16_t>(in[2 * i] | (in[2 * i + 1] << 8));
      v = kind == 1 ? math::half_to_float(w) : math::bf16_to_float(w);
    }
    if (add) {
      static_cast<float*>(out)[i] += v;
    } else {
      store(out, dt, i, v);
    }
  }
}

// One thread per bucket: the fixed-order reduction of math::bucket_stats.
// mode: 0 minmax (lo, step), 1 absmax (m), 2 sign (mean |x|).
__global__ void bucket_scales(const void* x, int dt, const float* e, std::size_t n,
                              std::uint32_t bucket, int mode, std::uint32_t levels,
                              unsigned char* scales, unsigned* fail) {
  const std::size_t b = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x;
  const std::size_t s = b * bucket;
  if (s >= n) return;
  const std::uint32_t m = static_cast<std::uint32_t>(n - s < bucket ? n - s : bucket);
  const math::BucketStats st = math::bucket_stats(Src{x, dt, e, s}, m);
  if (st.amax >= math::kInfBits) {
    atomicMax(fail, kNonFinite);
    return;
  }
  if (mode == 1) {
    store_f32(scales + 4 * b, math::bits_float(st.amax));
  } else if (mode == 2) {
    const float scale = st.abs_sum / static_cast<float>(m);
    if (!(scale <= 3.4028234663852886e38f)) atomicMax(fail, kRange);
    store_f32(scales + 4 * b, scale);
  } else {
    if (static_cast<double>(st.hi) - static_cast<double>(st.lo) > 3.4028234663852886e38) {
      atomicMax(fail, kRange);
      return;
    }
    const math::Grid g = math::grid_minmax(st.lo, st.hi, levels);
    store_f32(scales + 8 * b, g.lo);
    store_f32(scales + 8 * b + 4, g.step);
  }
}

__device__ math::Grid grid_of(const unsigned char* scales, std::size_t b, int mode,
                              std::uint32_t levels, bool for_encode) {
  math::Grid g;
  if (mode == 1) {
    g = math::grid_absmax(load_f32(scales + 4 * b), levels);
  } else {
    g = math::Grid{load_f32(scales + 8 * b), load_f32(scales + 8 * b + 4), 0.0f};
    if (for_encode) g.inv = math::grid_inverse(g.step);
  }
  return g;
}

// One thread per payload byte (8 / bits elements; buckets are multiples of 64 elements, so
// a byte never straddles two buckets). mode 2 = sign.
__global__ void code_encode(const void* x, int dt, float* e, std::size_t n, std::uint32_t bucket,
                            std::uint32_t bits, int mode, bool stochastic,
                            const unsigned char* scales, unsigned char* payload,
                            std::uint64_t goff, std::uint64_t seed, std::uint64_t step,
                            const unsigned* fail) {
  if (*fail != kOk) return;
  const std::uint32_t per = 8 / bits;
  const std::size_t nbytes = (n * bits + 7) / 8;
  const std::uint32_t levels = math::levels_of(bits);
  const float lf = static_cast<float>(levels);
  for (std::size_t j = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; j < nbytes;
       j += std::size_t{gridDim.x} * blockDim.x) {
    const std::size_t i0 = j * per;
    const std::size_t b = i0 / bucket;
    std::uint32_t byte = 0;
    if (mode == 2) {
      const float scale = load_f32(scales + 4 * b);
      for (std::uint32_t k = 0; k < per && i0 + k < n; ++k) {
        float v = load(x, dt, i0 + k);
        if (e) v += e[i0 + k];
        const std::uint32_t bit = math::sign_bit(v);
        byte |= bit << k;
        if (e) e[i0 + k] = v - math::sign_value(bit, scale);
      }
    } else {
      math::Grid g = grid_of(scales, b, mode, levels, true);
      for (std::uint32_t k = 0; k < per && i0 + k < n; ++k) {
        const std::size_t i = i0 + k;
        float v = load(x, dt, i);
        if (e) v += e[i];
        const float t = math::grid_position(v, g, lf);
        const std::uint32_t code =
            stochastic ? math::round_stochastic(t, math::philox_word(seed, step, math::Stream::Rounding, goff + i))
                       : math::round_nearest(t);
        byte |= code << (k * bits);
        if (e) e[i] = v - math::dequantize(code, g);
      }
    }
    payload[j] = static_cast<unsigned char>(byte);
  }
}

__global__ void check_scales(const unsigned char* scales, std::size_t nscales, int mode,
                             unsigned* fail) {
  for (std::size_t b = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; b < nscales;
       b += std::size_t{gridDim.x} * blockDim.x) {
    const float v = load_f32(scales + 4 * b);
    const bool is_lo = mode == 0 && b % 2 == 0;  // a min-max offset may be negative
    if (!(math::abs_bits(v) < math::kInfBits) || (!is_lo && v < 0.0f)) atomicMax(fail, kBadScale);
  }
}

__global__ void code_decode(const unsigned char* payload, const unsigned char* scales, std::size_t n,
                            std::uint32_t bucket, std::uint32_t bits, int mode, void* out, int dt,
                            bool add, const unsigned* fail) {
  if (*fail != kOk) return;
  const std::uint32_t levels = math::levels_of(bits);
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n;
       i += std::size_t{gridDim.x} * blockDim.x) {
    const std::size_t b = i / bucket;
    const std::uint32_t code = (payload[i * bits / 8] >> ((i * bits) % 8)) & levels;
    const float v = mode == 2 ? math::sign_value(code, load_f32(scales + 4 * b))
                              : math::dequantize(code, grid_of(scales, b, mode, levels, false));
    if (add) {
      static_cast<float*>(out)[i] += v;
    } else {
      store(out, dt, i, v);
    }
  }
}

int mode_of(const CodecSpec& s) {
  if (s.kind == CodecKind::Sign) return 2;
  return s.scale == ScaleMode::AbsMax ? 1 : 0;
}
int cast_kind(CodecKind k) { return k == CodecKind::Fp16 ? 1 : k == CodecKind::Bf16 ? 2 : 0; }
unsigned grid_for(std::size_t work) {
  const std::size_t g = (work + 255) / 256;
  return static_cast<unsigned>(g < 4096 ? (g == 0 ? 1 : g) : 4096);
}

void require_dense(const Codec& c) {
  if (c.sparse()) throw Error(ErrorCode::Unsupported, "CUDA codecs: sparse codecs are host-only");
  if (c.spec().outliers)
    throw Error(ErrorCode::Unsupported, "CUDA codecs: sign with outliers is host-only");
}

// A device flag, freed on scope exit.
struct Flag {
  unsigned* p = nullptr;
  explicit Flag(cudaStream_t s) {
    check(cudaMallocAsync(reinterpret_cast<void**>(&p), sizeof(unsigned), s), "cudaMallocAsync");
    check(cudaMemsetAsync(p, 0, sizeof(unsigned), s), "cudaMemsetAsync");
  }
  ~Flag() { cudaFree(p); }
  unsigned read(cudaStream_t s) const {
    unsigned v = 0;
    check(cudaMemcpyAsync(&v, p, sizeof v, cudaMemcpyDeviceToHost, s), "cudaMemcpyAsync");
    check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
    return v;
  }
};

void decode_impl(const Codec& c, const std::byte* d_in, std::size_t in_bytes, void* d_out, DType dt,
                 std::size_t count, bool add, cudaStream_t stream) {
  require_dense(c);
  const CodecSpec& s = c.spec();
  std::byte hbuf[wire::kHeaderBytes] = {};
  const std::size_t hbytes = in_bytes < wire::kHeaderBytes ? in_bytes : wire::kHeaderBytes;
  if (hbytes > 0) {
    check(cudaMemcpyAsync(hbuf, d_in, hbytes, cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync");
    check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  }
  // read_header looks at in_bytes for truncation; the body stays on the device.
  const wire::Header h = wire::read_header(hbuf, in_bytes < wire::kHeaderBytes ? hbytes : in_bytes,
                                           wire::header_for(s, count));
  if (h.nnz != 0 || h.body_bytes != detail::dense_body_bytes(s, count)) {
    throw Error(ErrorCode::WireFormat, "codec message: body size does not match " + s.to_string());
  }
  const auto* body = reinterpret_cast<const unsigned char*>(d_in) + wire::kHeaderBytes;
  const int odt = static_cast<int>(dt);
  if (s.kind == CodecKind::Quantize || s.kind == CodecKind::Sign) {
    Flag fail(stream);
    const std::size_t ns = detail::scale_floats(s, count);
    check_scales<<<grid_for(ns), 256, 0, stream>>>(body, ns, mode_of(s), fail.p);
    code_decode<<<grid_for(count), 256, 0, stream>>>(body + 4 * ns, body, count, s.bucket, s.bits,
                                                     mode_of(s), d_out, odt, add, fail.p);
    check(cudaGetLastError(), "decode kernel launch");
    if (fail.read(stream) != kOk) {
      throw Error(ErrorCode::WireFormat, "codec message: a bucket scale is non-finite or negative");
    }
  } else {
    cast_decode<<<grid_for(count), 256, 0, stream>>>(body, count, cast_kind(s.kind), d_out, odt, add);
    check(cudaGetLastError(), "decode kernel launch");
    check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  }
}

}  // namespace

std::size_t encode(const Codec& c, const void* d_in, DType in_dtype, std::size_t count,
                   std::uint64_t global_offset, std::uint64_t seed, std::uint64_t step,
                   std::byte* d_out, std::size_t out_cap, float* d_residual, cudaStream_t stream) {
  require_dense(c);
  if (in_dtype != DType::Float32 && in_dtype != DType::Float16 && in_dtype != DType::BFloat16) {
    throw Error(ErrorCode::Unsupported, "CUDA encode: float32, float16 or bfloat16 input only");
  }
  const std::size_t need = c.max_encoded_bytes(count);
  if (out_cap < need || d_out == nullptr || (d_in == nullptr && count != 0)) {
    throw Error(ErrorCode::InvalidArgument, "CUDA encode: null buffer or output smaller than " +
                                                std::to_string(need) + " bytes");
  }
  const CodecSpec& s = c.spec();
  wire::Header h = wire::header_for(s, count);
  h.body_bytes = detail::dense_body_bytes(s, count);
  std::byte hbuf[wire::kHeaderBytes];
  wire::write_header(h, hbuf);
  check(cudaMemcpyAsync(d_out, hbuf, sizeof hbuf, cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync");
  auto* body = reinterpret_cast<unsigned char*>(d_out) + wire::kHeaderBytes;
  const int dt = static_cast<int>(in_dtype);
  if (s.kind == CodecKind::Quantize || s.kind == CodecKind::Sign) {
    Flag fail(stream);
    const std::size_t nb = (count + s.bucket - 1) / s.bucket;
    const std::size_t ns = detail::scale_floats(s, count);
    bucket_scales<<<static_cast<unsigned>((nb + 127) / 128 + (nb == 0)), 128, 0, stream>>>(
        d_in, dt, d_residual, count, s.bucket, mode_of(s), math::levels_of(s.bits), body, fail.p);
    code_encode<<<grid_for((count * s.bits + 7) / 8), 256, 0, stream>>>(
        d_in, dt, d_residual, count, s.bucket, s.bits, mode_of(s), s.round == Rounding::Stochastic,
        body, body + 4 * ns, global_offset, seed, step, fail.p);
    check(cudaGetLastError(), "encode kernel launch");
    const unsigned f = fail.read(stream);
    if (f == kNonFinite) {
      throw Error(ErrorCode::InvalidArgument, "CUDA encode: non-finite input (quantizing codecs need finite input)");
    }
    if (f != kOk) throw Error(ErrorCode::InvalidArgument, "CUDA encode: a bucket's range or mean overflows float");
  } else {
    cast_encode<<<grid_for(count), 256, 0, stream>>>(d_in, dt, d_residual, count, cast_kind(s.kind), body);
    check(cudaGetLastError(), "encode kernel launch");
    check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  }
  return wire::kHeaderBytes + h.body_bytes;
}

void decode(const Codec& c, const std::byte* d_in, std::size_t in_bytes, void* d_out, DType out_dtype,
            std::size_t count, cudaStream_t stream) {
  decode_impl(c, d_in, in_bytes, d_out, out_dtype, count, false, stream);
}

void decode_add(const Codec& c, const std::byte* d_in, std::size_t in_bytes, float* d_acc,
                std::size_t count, cudaStream_t stream) {
  decode_impl(c, d_in, in_bytes, d_acc, DType::Float32, count, true, stream);
}

}  // namespace gradwire::cuda
