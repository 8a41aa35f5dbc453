// gradwire::Codec: spec validation, sizes, dispatch to the codec families, error bounds.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <limits>
#include <string>

#include "codec/detail.hpp"
#include "codec/wire.hpp"
#include "gradwire/codec.hpp"
#include "gradwire/error.hpp"
#include "math/half.hpp"
#include "math/quant.hpp"

namespace gradwire {

namespace {

[[noreturn]] void invalid(const std::string& what) {
  throw Error(ErrorCode::InvalidArgument, what);
}

CodecSpec normalised(CodecSpec s) {
  switch (s.kind) {
    case CodecKind::None: s.bits = 32; break;
    case CodecKind::Fp16:
    case CodecKind::Bf16: s.bits = 16; break;
    case CodecKind::Quantize:
      if (s.bits != 1 && s.bits != 2 && s.bits != 4 && s.bits != 8) {
        invalid("quantize codec: bits " + std::to_string(s.bits) + "; accepted: 1, 2, 4, 8");
      }
      break;
    case CodecKind::Sign: s.bits = 1; break;
    case CodecKind::TopK:
    case CodecKind::RandK:
    case CodecKind::Threshold: s.bits = s.value == ValueType::F16 ? 16 : 32; break;
    default: invalid("unknown codec kind " + std::to_string(static_cast<int>(s.kind)));
  }
  if ((s.kind == CodecKind::Quantize || s.kind == CodecKind::Sign) &&
      (s.bucket < 64 || s.bucket > (1u << 24) || s.bucket % 64 != 0)) {
    invalid("bucket " + std::to_string(s.bucket) + " must be a multiple of 64 in [64, 2^24]");
  }
  if (s.outliers != 0 && (s.kind != CodecKind::Sign || s.outliers > 127 || s.outliers >= s.bucket)) {
    invalid("outliers " + std::to_string(s.outliers) + ": sign only, in [0, 127]");
  }
  if ((s.kind == CodecKind::TopK && s.k == 0) || s.kind == CodecKind::RandK) {
    if (!(s.ratio > 0.0 && s.ratio <= 1.0)) invalid("sparsifier ratio must be in (0, 1]");
  }
  if (s.kind == CodecKind::Threshold && !(s.threshold >= 0.0f && std::isfinite(s.threshold))) {
    invalid("threshold must be finite and >= 0");
  }
  return s;
}

// Rounding error bound of a sparse value as sent (f32: exact; f16: half an ulp, or nothing
// promised past the float16 range).
float value_bound(ValueType vt, float x) {
  if (vt == ValueType::F32) return 0.0f;
  const float a = std::fabs(x);
  if (!(a < 65520.0f)) return std::numeric_limits<float>::infinity();
  return std::max(a * 0x1p-11f, 0x1p-25f);
}

}  // namespace

Codec::Codec(const CodecSpec& spec) : spec_(normalised(spec)) {}

std::uint32_t Codec::bucket_size() const noexcept {
  return spec_.kind == CodecKind::Quantize || spec_.kind == CodecKind::Sign ? spec_.bucket : 0;
}

std::size_t Codec::topk_count(std::size_t count) const {
  if (spec_.kind != CodecKind::TopK || count == 0) return 0;
  if (spec_.k != 0) return static_cast<std::size_t>(std::min<std::uint64_t>(spec_.k, count));
  const double k = std::ceil(spec_.ratio * static_cast<double>(count));
  return std::min(count, std::max<std::size_t>(1, static_cast<std::size_t>(k)));
}

std::size_t Codec::max_encoded_bytes(std::size_t count) const {
  if (count > wire::kMaxCount) invalid("count " + std::to_string(count) + " exceeds 2^40");
  if (!sparse()) return wire::kHeaderBytes + detail::dense_body_bytes(spec_, count);
  const std::size_t vsize = spec_.value == ValueType::F16 ? 2 : 4;
  const std::size_t isize =
      spec_.kind == CodecKind::RandK ? 0 : (spec_.index == IndexCoding::Delta ? 5 : 4);
  const std::size_t n = spec_.kind == CodecKind::TopK ? topk_count(count) : count;
  return wire::kHeaderBytes + n * (vsize + isize);
}

std::size_t Codec::encode(const void* in, DType in_dtype, std::size_t count,
                          std::uint64_t global_offset, std::uint64_t seed, std::uint64_t step,
                          std::byte* out, std::size_t out_cap, float* residual) const {
  if (count > wire::kMaxCount) invalid("encode: count " + std::to_string(count) + " exceeds 2^40");
  if (global_offset > wire::kMaxCount) invalid("encode: global_offset exceeds 2^40");
  if ((in == nullptr && count != 0) || out == nullptr) invalid("encode: null buffer");
  if (in_dtype != DType::Float32 && in_dtype != DType::Float16 && in_dtype != DType::BFloat16) {
    throw Error(ErrorCode::Unsupported, "encode: codecs take float32, float16 or bfloat16, not " +
                                            std::string(dtype_name(in_dtype)));
  }
  wire::Header h = wire::header_for(spec_, count);
  if (!sparse()) {
    const std::size_t need = max_encoded_bytes(count);
    if (out_cap < need) {
      invalid("encode: output holds " + std::to_string(out_cap) + " bytes, " +
              spec_.to_string() + " needs " + std::to_string(need));
    }
  } else if (out_cap < wire::kHeaderBytes) {
    invalid("encode: output smaller than the 56-byte header");
  }
  const detail::EncodeArgs a{in, in_dtype, count, global_offset, seed, step, residual, out, out_cap};
  switch (spec_.kind) {
    case CodecKind::Quantize: h.body_bytes = detail::encode_quantize(spec_, a); break;
    case CodecKind::Sign: h.body_bytes = detail::encode_sign(spec_, a); break;
    case CodecKind::TopK:
    case CodecKind::RandK:
    case CodecKind::Threshold:
      h.nnz = static_cast<std::uint32_t>(topk_count(count));
      h.body_bytes = detail::encode_sparse(spec_, a, h);
      break;
    default: h.body_bytes = detail::encode_cast(spec_, a); break;
  }
  wire::write_header(h, out);
  return wire::kHeaderBytes + h.body_bytes;
}

namespace {

void decode_any(const CodecSpec& spec, std::size_t topk_n, const std::byte* in,
                std::size_t in_bytes, std::size_t count, detail::DecodeTarget t) {
  if (count > wire::kMaxCount) invalid("decode: count exceeds 2^40");
  if (t.out == nullptr && count != 0) invalid("decode: null output");
  const wire::Header h = wire::read_header(in, in_bytes, wire::header_for(spec, count));
  const std::byte* body = in + wire::kHeaderBytes;
  if (!spec.sparse()) {
    if (h.nnz != 0) throw Error(ErrorCode::WireFormat, "codec message: dense codec with nnz != 0");
    const std::uint64_t want = detail::dense_body_bytes(spec, count);
    if (h.body_bytes != want) {
      throw Error(ErrorCode::WireFormat, "codec message: body is " + std::to_string(h.body_bytes) +
                                             " bytes, " + spec.to_string() + " of " +
                                             std::to_string(count) + " elements takes " +
                                             std::to_string(want));
    }
  }
  switch (spec.kind) {
    case CodecKind::Quantize: detail::decode_quantize(spec, body, count, t); break;
    case CodecKind::Sign: detail::decode_sign(spec, body, count, t); break;
    case CodecKind::TopK:
    case CodecKind::RandK:
    case CodecKind::Threshold: detail::decode_sparse(spec, h, body, count, topk_n, t); break;
    default: detail::decode_cast(spec, body, count, t); break;
  }
}

}  // namespace

void Codec::decode(const std::byte* in, std::size_t in_bytes, void* out, DType out_dtype,
                   std::size_t count) const {
  if (out_dtype != DType::Float32 && out_dtype != DType::Float16 && out_dtype != DType::BFloat16) {
    throw Error(ErrorCode::Unsupported, "decode: codecs write float32, float16 or bfloat16, not " +
                                            std::string(dtype_name(out_dtype)));
  }
  decode_any(spec_, topk_count(count), in, in_bytes, count, {out, out_dtype, false});
}

void Codec::decode_add(const std::byte* in, std::size_t in_bytes, float* acc,
                       std::size_t count) const {
  decode_any(spec_, topk_count(count), in, in_bytes, count, {acc, DType::Float32, true});
}

float Codec::bucket_error_bound(float lo, float hi) const {
  const float mag = std::max(std::fabs(lo), std::fabs(hi));
  if (spec_.kind == CodecKind::Sign) return mag * (1.0f + 0x1p-20f);
  if (spec_.kind != CodecKind::Quantize) return std::numeric_limits<float>::infinity();
  const std::uint32_t levels = math::levels_of(spec_.bits);
  const math::Grid g = spec_.scale == ScaleMode::AbsMax ? math::grid_absmax(mag, levels)
                                                        : math::grid_minmax(lo, hi, levels);
  const float steps = spec_.round == Rounding::Stochastic ? 1.0f : 0.5f;
  // Float rounding in (v - lo) * inv and in lo + q * step: a few ulps of the bucket's
  // magnitude, bounded generously by 2^-19 of it; 2^-120 covers grids so fine that 1/step
  // overflows.
  const float lm = spec_.scale == ScaleMode::AbsMax ? 2.0f * mag : std::fabs(lo) + std::fabs(hi);
  return steps * g.step + 0x1p-19f * lm + 0x1p-120f;
}

std::vector<float> Codec::error_bounds(const float* x, std::size_t n) const {
  std::vector<float> b(n, 0.0f);
  const float inf = std::numeric_limits<float>::infinity();
  switch (spec_.kind) {
    case CodecKind::None: break;
    case CodecKind::Fp16:
      for (std::size_t i = 0; i < n; ++i) b[i] = value_bound(ValueType::F16, x[i]);
      break;
    case CodecKind::Bf16:
      for (std::size_t i = 0; i < n; ++i) {
        const float a = std::fabs(x[i]);
        b[i] = !(a < 0x1.fefffep127f) ? inf : std::max(a * 0x1p-8f, 0x1p-134f);
      }
      break;
    case CodecKind::Quantize:
    case CodecKind::Sign:
      for (std::size_t s = 0; s < n; s += spec_.bucket) {
        const std::uint32_t m = static_cast<std::uint32_t>(std::min<std::size_t>(spec_.bucket, n - s));
        const math::BucketStats st = math::bucket_stats([&](std::uint32_t i) { return x[s + i]; }, m);
        float bb = bucket_error_bound(st.lo, st.hi);
        if (st.amax >= math::kInfBits) bb = inf;
        if (spec_.kind == CodecKind::Sign && st.amax < math::kInfBits) {
          // |x - sign(x) s| = ||x| - s| with s the bucket's mean |x|.
          const float scale = st.abs_sum / static_cast<float>(m);
          if (spec_.outliers) {
            // Outliers travel exactly; the others' scale (the mean of the smaller ones) lies
            // in [0, scale], so their error is at most max(|x|, scale).
            for (std::uint32_t i = 0; i < m; ++i) {
              const float a = std::fabs(x[s + i]);
              b[s + i] = std::max(a, scale) * (1.0f + 0x1p-20f);
            }
            continue;
          }
          for (std::uint32_t i = 0; i < m; ++i) {
            const float a = std::fabs(x[s + i]);
            b[s + i] = std::fabs(a - scale) + 0x1p-22f * (a + scale);
          }
          continue;
        }
        std::fill(b.begin() + static_cast<std::ptrdiff_t>(s), b.begin() + static_cast<std::ptrdiff_t>(s + m), bb);
      }
      break;
    case CodecKind::TopK: {
      // t: the k-th largest magnitude. Above it an element is sent, below it dropped; at it
      // either (the tie rule decides), so its bound covers both.
      const std::size_t k = topk_count(n);
      std::vector<std::uint32_t> keys(n);
      for (std::size_t i = 0; i < n; ++i) keys[i] = math::abs_bits(x[i]);
      std::uint32_t t = 0;
      if (k > 0) {
        std::nth_element(keys.begin(), keys.begin() + static_cast<std::ptrdiff_t>(k - 1), keys.end(),
                         [](std::uint32_t a, std::uint32_t c) { return a > c; });
        t = keys[k - 1];
      }
      for (std::size_t i = 0; i < n; ++i) {
        const std::uint32_t key = math::abs_bits(x[i]);
        const float vb = value_bound(spec_.value, x[i]);
        b[i] = k == 0 || key < t ? std::fabs(x[i]) : key == t ? std::max(std::fabs(x[i]), vb) : vb;
      }
      break;
    }
    case CodecKind::Threshold: {
      const std::uint32_t t = math::abs_bits(spec_.threshold);
      for (std::size_t i = 0; i < n; ++i) {
        b[i] = math::abs_bits(x[i]) >= t ? value_bound(spec_.value, x[i]) : std::fabs(x[i]);
      }
      break;
    }
    case CodecKind::RandK:
      for (std::size_t i = 0; i < n; ++i) b[i] = std::max(std::fabs(x[i]), value_bound(spec_.value, x[i]));
      break;
  }
  return b;
}

std::vector<std::uint32_t> randk_indices(double ratio, std::uint64_t seed, std::uint64_t step,
                                         std::uint64_t global_offset, std::size_t count) {
  if (!(ratio > 0.0 && ratio <= 1.0)) invalid("randk_indices: ratio must be in (0, 1]");
  std::vector<std::uint32_t> idx;
  detail::randk_select(detail::randk_param(ratio), seed, step, global_offset, count, idx);
  return idx;
}

}  // namespace gradwire
