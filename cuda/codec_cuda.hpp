// The codecs as CUDA kernels over device buffers: every codec (none, fp16, bf16, q1..q8,
// sign, top-k, random-k, threshold), the same math (src/math) and the same bytes as the host
// codec; tests/gpu compares the two bit for bit.
//
// Hot path: the *_async calls only enqueue kernels on the caller's stream. Nothing is copied
// to the host and nothing synchronizes: a received message is validated by the kernels, which
// record the first failure (and the size of an encoded message) in a Status on the device.
// The host reads it when it waits:
//
//   cuda::Status st;                                    // once (allocates; not per call)
//   cuda::encode_async(codec, d_grad, DType::Float32, n, off, seed, step, d_msg, cap, d_res, st, s);
//   cuda::decode_add_async(codec, d_msg2, bytes2, d_acc, n, st, s);
//   ...                                                 // more work on s
//   std::size_t bytes = st.check(s);                    // waits for s, throws the first error
//
// Errors the host can see at once (null pointers, a capacity below max_encoded_bytes for
// dense codecs, a dtype, a buffer shorter than the header) are thrown by the enqueue call.
// Everything that depends on device data (non-finite input, a malformed message) is thrown
// by check(). After a recorded failure, later calls enqueued with the same Status skip their
// work (they write nothing) until check() has reported and cleared it. A decode that fails
// validation writes no element (validation runs before any output is written).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "gradwire/codec.hpp"

namespace gradwire::cuda {

namespace dev {
struct Words;
}

class Status {
 public:
  Status();  // device words on the current device (cudaMalloc: make it once, not per call)
  ~Status();
  Status(const Status&) = delete;
  Status& operator=(const Status&) = delete;

  // Waits (at most timeout_s; Timeout after that) for the work enqueued on `stream` so far,
  // then throws the first failure a kernel recorded (InvalidArgument for encode input,
  // WireFormat for a message, naming the field) and clears it. Returns the size in bytes of
  // the message the last encode wrote (0 before any).
  std::size_t check(cudaStream_t stream, double timeout_s = 60.0);

  dev::Words* device() const noexcept { return words_; }

 private:
  dev::Words* words_ = nullptr;
  dev::Words* host_ = nullptr;  // pinned: check() reads the words with a copy on the stream
  cudaEvent_t done_ = nullptr;
};

// As Codec::encode, with every pointer in device memory; residual optional. Enqueues and
// returns at once: the message size for dense codecs (exact), 0 for sparse ones, whose size
// check() returns. out_cap: dense codecs need max_encoded_bytes(count); sparse ones write at
// most max_encoded_bytes(count) and record a failure if the message would not fit.
std::size_t encode_async(const Codec& codec, const void* d_in, DType in_dtype, std::size_t count,
                         std::uint64_t global_offset, std::uint64_t seed, std::uint64_t step,
                         std::byte* d_out, std::size_t out_cap, float* d_residual, Status& status,
                         cudaStream_t stream);

// As Codec::decode / decode_add: the message is validated on the device (header, scales,
// indices) before any element is written.
void decode_async(const Codec& codec, const std::byte* d_in, std::size_t in_bytes, void* d_out,
                  DType out_dtype, std::size_t count, Status& status, cudaStream_t stream);
void decode_add_async(const Codec& codec, const std::byte* d_in, std::size_t in_bytes, float* d_acc,
                      std::size_t count, Status& status, cudaStream_t stream);

// Synchronous forms (enqueue, then check with a Status of their own): for tests and one-off
// calls, not for hot paths (each allocates a Status and waits).
std::size_t encode(const Codec& codec, const void* d_in, DType in_dtype, std::size_t count,
                   std::uint64_t global_offset, std::uint64_t seed, std::uint64_t step,
                   std::byte* d_out, std::size_t out_cap, float* d_residual, cudaStream_t stream);
void decode(const Codec& codec, const std::byte* d_in, std::size_t in_bytes, void* d_out,
            DType out_dtype, std::size_t count, cudaStream_t stream);
void decode_add(const Codec& codec, const std::byte* d_in, std::size_t in_bytes, float* d_acc,
                std::size_t count, cudaStream_t stream);

}  // namespace gradwire::cuda
