// The dense codecs (none, fp16, bf16, q1..q8, sign) as CUDA kernels over device buffers.
// They run the same math (src/math) as the host codec and write the same bytes; the GPU
// tests compare the two bit for bit. Sparse codecs are host-only for now (Unsupported).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "gradwire/codec.hpp"

namespace gradwire::cuda {

// As Codec::encode, with every pointer in device memory; residual optional. Enqueued on
// `stream`, then synchronized (the non-finite check has to reach the host). Returns bytes.
std::size_t encode(const Codec& codec, const void* d_in, DType in_dtype, std::size_t count,
                   std::uint64_t global_offset, std::uint64_t seed, std::uint64_t step,
                   std::byte* d_out, std::size_t out_cap, float* d_residual, cudaStream_t stream);

// As Codec::decode / decode_add. The header is copied to the host and validated there; the
// scales are validated on the device before any element is written. Synchronizes.
void decode(const Codec& codec, const std::byte* d_in, std::size_t in_bytes, void* d_out,
            DType out_dtype, std::size_t count, cudaStream_t stream);
void decode_add(const Codec& codec, const std::byte* d_in, std::size_t in_bytes, float* d_acc,
                std::size_t count, cudaStream_t stream);

}  // namespace gradwire::cuda
