// The codec families' entry points, behind gradwire::Codec's dispatch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "codec/wire.hpp"
#include "gradwire/codec.hpp"

namespace gradwire::detail {

struct EncodeArgs {
  const void* in;
  DType dtype;
  std::size_t count;
  std::uint64_t global_offset, seed, step;
  float* residual;  // null: no error feedback
  std::byte* out;   // room for header + body checked by the caller for dense codecs
  std::size_t cap;
};

// Where decoded values go: out as dtype, or (add) float32 acc += value.
struct DecodeTarget {
  void* out;
  DType dtype;
  bool add;
};

// Each returns the body bytes it wrote after the header (header filled by the caller except
// for nnz/seed/step/offset, which the sparse encoder sets in `h`).
std::size_t encode_cast(const CodecSpec& s, const EncodeArgs& a);
std::size_t encode_quantize(const CodecSpec& s, const EncodeArgs& a);
std::size_t encode_sign(const CodecSpec& s, const EncodeArgs& a);
std::size_t encode_sparse(const CodecSpec& s, const EncodeArgs& a, wire::Header& h);

// Body sizes of the dense codecs: the exact size of what follows the header.
std::uint64_t dense_body_bytes(const CodecSpec& s, std::uint64_t count);
std::uint64_t scale_floats(const CodecSpec& s, std::uint64_t count);

void decode_cast(const CodecSpec& s, const std::byte* body, std::size_t count, DecodeTarget t);
void decode_quantize(const CodecSpec& s, const std::byte* body, std::size_t count,
                     DecodeTarget t);
void decode_sign(const CodecSpec& s, const std::byte* body, std::size_t count, DecodeTarget t);
void decode_sparse(const CodecSpec& s, const wire::Header& h, const std::byte* body,
                   std::size_t count, std::size_t topk_count, DecodeTarget t);

// Top-k selection: positions of the k largest abs_bits(v[i]), ties to the lower index,
// returned ascending.
void select_topk(const float* v, std::size_t n, std::size_t k, std::vector<std::uint32_t>& idx);
// Random-k's per-element probability as a 32-bit threshold: chosen when word <= param.
std::uint32_t randk_param(double ratio);
void randk_select(std::uint32_t param, std::uint64_t seed, std::uint64_t step,
                  std::uint64_t global_offset, std::size_t count, std::vector<std::uint32_t>& idx);

}  // namespace gradwire::detail
