// Gradient codecs: lossy or lossless encodings of a float gradient slice into a
// self-describing, validated byte message (docs/codecs.md, docs/wire-format.md).
//
//   auto codec = gradwire::make_codec("q4:bucket=1024,round=stochastic");
//   std::vector<std::byte> msg(codec.max_encoded_bytes(n));
//   size_t bytes = codec.encode(grad, DType::Float32, n, offset, seed, step, msg.data(),
//                               msg.size(), residual);   // residual: error feedback, optional
//   codec.decode_add(msg.data(), bytes, sum, n);        // sum += decode(msg)
//
// A slice is `count` consecutive elements of a larger gradient starting at `global_offset`.
// Random bits (stochastic rounding, random-k) are keyed by (seed, step, global index), so
// they do not depend on how the gradient is cut into slices. Buckets (quantizers, sign) and
// top-k are relative to the slice start: callers that need slice-independent results cut
// slices at multiples of the bucket size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "gradwire/types.hpp"

namespace gradwire {

// Values travel in the wire header; never renumber.
enum class CodecKind : std::uint8_t {
  None = 0,       // float32 as is
  Fp16 = 1,       // cast to float16, round to nearest even
  Bf16 = 2,       // cast to bfloat16, round to nearest even
  Quantize = 3,   // q1/q2/q4/q8: bucketed uniform grid
  Sign = 4,       // one bit per element, mean |x| per bucket
  TopK = 5,       // the k largest |x|
  RandK = 6,      // elements chosen by (seed, step, global index)
  Threshold = 7,  // every |x| >= threshold
};
enum class Rounding : std::uint8_t { Nearest, Stochastic };
enum class ScaleMode : std::uint8_t { MinMax, AbsMax };
enum class IndexCoding : std::uint8_t { U32, Delta };  // sparse indices
enum class ValueType : std::uint8_t { F32, F16 };     // sparse values

struct CodecSpec {
  CodecKind kind = CodecKind::None;
  std::uint32_t bits = 32;      // Quantize: 1, 2, 4 or 8; fixed by the kind otherwise
  std::uint32_t bucket = 512;   // Quantize, Sign: elements per scale; a multiple of 64
  Rounding round = Rounding::Stochastic;
  ScaleMode scale = ScaleMode::MinMax;
  double ratio = 0.0;           // TopK (when k == 0), RandK: fraction in (0, 1]
  std::uint64_t k = 0;          // TopK: absolute count, if non-zero
  float threshold = 0.0f;       // Threshold: keep |x| >= threshold
  IndexCoding index = IndexCoding::U32;
  ValueType value = ValueType::F32;
  // Sign: the `outliers` largest |x| of each bucket travel exactly (index, float32 value) and
  // the scale is the mean |x| of the others (0..127; docs/codecs.md "Sign and momentum").
  std::uint32_t outliers = 0;

  bool sparse() const noexcept;
  std::string to_string() const;  // canonical spec string; parse_codec(to_string()) == *this
  friend bool operator==(const CodecSpec&, const CodecSpec&) = default;
};

// Parses "none", "fp16", "bf16", "q8", "q4", "q2", "q1", "sign", "topk:0.01", "topk:k=1000",
// "randk:0.01", "threshold:1e-3", "sign:outliers=5", with options after ':' or ',' such as
// "q4:bucket=1024,round=nearest,scale=absmax" or "topk:0.01,index=delta,value=f16".
// Throws Error(InvalidArgument) naming the bad token and what is accepted.
CodecSpec parse_codec(std::string_view spec);

class Codec {
 public:
  explicit Codec(const CodecSpec& spec);  // validates the spec (InvalidArgument)
  const CodecSpec& spec() const noexcept { return spec_; }
  CodecKind kind() const noexcept { return spec_.kind; }
  std::uint32_t bits() const noexcept { return spec_.bits; }
  std::uint32_t bucket_size() const noexcept;  // 0 for codecs without buckets
  bool sparse() const noexcept { return spec_.sparse(); }

  // Upper bound of encode()'s result for `count` elements; exact for dense codecs.
  std::size_t max_encoded_bytes(std::size_t count) const;
  // Number of elements a top-k message of `count` elements carries.
  std::size_t topk_count(std::size_t count) const;

  // Encodes in[0, count) (Float32, Float16 or BFloat16) into out; returns the bytes written.
  // With residual (float32, count elements) it encodes v = in + residual and leaves
  // residual = v - decode(message) (error feedback), in the same pass.
  // Errors: InvalidArgument (null pointer, out_cap too small, non-finite input to Quantize
  // or Sign, a bucket whose range or mean overflows float), Unsupported (dtype). After an
  // error, out and residual hold unspecified values.
  std::size_t encode(const void* in, DType in_dtype, std::size_t count,
                     std::uint64_t global_offset, std::uint64_t seed, std::uint64_t step,
                     std::byte* out, std::size_t out_cap, float* residual = nullptr) const;

  // Validates the whole message (header, scales, indices) before writing anything, then
  // writes count elements to out (Float32, Float16 or BFloat16). WireFormat on any defect.
  void decode(const std::byte* in, std::size_t in_bytes, void* out, DType out_dtype,
              std::size_t count) const;
  // As decode, but acc[i] += decoded[i].
  void decode_add(const std::byte* in, std::size_t in_bytes, float* acc,
                  std::size_t count) const;

  // The documented per-element error bound |x_i - decode(encode(x))_i| for encoding x[0, n)
  // as one slice (docs/codecs.md): bounds[i] for every i. +inf where nothing is promised
  // (e.g. fp16 overflow). For Quantize this is bucket_error_bound of each bucket's range.
  std::vector<float> error_bounds(const float* x, std::size_t n) const;
  // Quantize: bound for any element of a bucket whose values lie in [lo, hi]
  // (one step for stochastic rounding, half a step for nearest, plus float rounding slack).
  float bucket_error_bound(float lo, float hi) const;

 private:
  CodecSpec spec_;
};

inline Codec make_codec(std::string_view spec) { return Codec(parse_codec(spec)); }

// Random-k's choice: the slice positions i (ascending) whose global index global_offset + i
// is drawn with probability `ratio` under (seed, step). The same on every rank, so the
// chosen values can be summed with a plain dense allreduce.
std::vector<std::uint32_t> randk_indices(double ratio, std::uint64_t seed, std::uint64_t step,
                                         std::uint64_t global_offset, std::size_t count);

}  // namespace gradwire
