// The entry points of the dense and sparse kernel families, behind cuda::encode_async and
// decode_async (api.cu). Internal to cuda/.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "gradwire/codec.hpp"
#include "gradwire/error.hpp"

namespace gradwire::cuda {

namespace dev {
struct Words;
}

struct EncodeCall {
  const void* in;
  DType dtype;
  std::size_t count;
  std::uint64_t global_offset, seed, step;
  std::byte* out;
  std::size_t cap;
  float* residual;
  dev::Words* status;
  cudaStream_t stream;
};

struct DecodeCall {
  const std::byte* in;
  std::size_t in_bytes;
  void* out;
  DType dtype;
  bool add;
  std::size_t count;
  dev::Words* status;
  cudaStream_t stream;
};

// Dense codecs: returns the message size (known on the host).
std::size_t dense_encode(const Codec& c, const EncodeCall& a);
void dense_decode(const Codec& c, const DecodeCall& a);
// Sparse codecs: the size reaches the host through the Status.
void sparse_encode(const Codec& c, const EncodeCall& a);
void sparse_decode(const Codec& c, const DecodeCall& a);

inline void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    throw Error(ErrorCode::Cuda, std::string(what) + ": " + cudaGetErrorString(e));
  }
}

}  // namespace gradwire::cuda
