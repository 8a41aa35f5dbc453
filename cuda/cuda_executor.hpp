// The CUDA codec executor (src/codec/executor.hpp): the codec kernels of codec_cuda.hpp and a
// few element kernels (add, divide, copy, zero, non-finite flag), all enqueued on one stream;
// nothing here synchronizes the device. Failures the kernels record (non-finite input, a
// malformed message) are thrown by finish(), which waits for the stream only.
#pragma once

#include <cuda_runtime_api.h>

#include <memory>

#include "codec/executor.hpp"

namespace gradwire::cuda {

class Status;

class CudaExecutor final : public exec::Executor {
 public:
  // stream: where every call enqueues (the plan's; its device must be current).
  explicit CudaExecutor(cudaStream_t stream);
  ~CudaExecutor() override;
  bool on_device() const noexcept override { return true; }
  const char* name() const noexcept override { return "cuda"; }
  void* stream() const noexcept override { return stream_; }
  // Another stream for the calls that follow (run_on_stream: the caller's); it first waits
  // for the zeroing of the workspace (allocate).
  void set_stream(cudaStream_t s) noexcept;

  void* allocate(std::size_t bytes) override;
  void release(void* p) noexcept override;
  std::size_t encode(const Codec& c, const void* in, DType t, std::size_t n, std::uint64_t goff,
                     std::uint64_t seed, std::uint64_t step, std::byte* out, std::size_t cap,
                     float* residual) override;
  void decode(const Codec& c, const std::byte* in, std::size_t bytes, void* out, DType t,
              std::size_t n) override;
  void decode_add(const Codec& c, const std::byte* in, std::size_t bytes, float* acc,
                  std::size_t n) override;
  void add(float* acc, const float* x, std::size_t n) override;
  void divide(float* x, std::size_t n, int p) override;
  void copy(void* dst, const void* src, std::size_t bytes) override;
  void zero(void* dst, std::size_t bytes) override;
  void zero_non_finite(float* x, std::size_t n) override;
  void flag_non_finite(const float* x, const float* res, std::size_t n, std::uint64_t* flag,
                       std::uint64_t value) override;
  void to_host(void* host, const void* src, std::size_t bytes) override;
  void from_host(void* dst, const void* host, std::size_t bytes) override;
  void finish(double timeout_s) override;

 private:
  cudaStream_t stream_;
  std::unique_ptr<Status> status_;
  cudaEvent_t zeroed_ = nullptr;  // recorded after the last workspace zeroing (legacy stream)
};

}  // namespace gradwire::cuda
