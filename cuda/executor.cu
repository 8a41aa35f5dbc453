// CudaExecutor: the codec entry points of api.cu plus the element kernels the algorithms need.
// Element kernels use plain IEEE float operations with --fmad=false (this library's flag), so
// add and divide round as the host executor's loops do.
#include <cmath>
#include <cstdint>

#include "codec_cuda.hpp"
#include "cuda_executor.hpp"
#include "launch.hpp"

namespace gradwire::cuda {
namespace {

constexpr int kBlock = 256;

unsigned blocks_for(std::size_t n) {
  const std::size_t b = (n + kBlock - 1) / kBlock;
  return static_cast<unsigned>(b < 65535 * 16 ? (b ? b : 1) : 65535 * 16);
}

__global__ void add_kernel(float* acc, const float* x, std::size_t n) {
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n;
       i += std::size_t{gridDim.x} * blockDim.x)
    acc[i] = acc[i] + x[i];
}

__global__ void divide_kernel(float* x, std::size_t n, float d) {
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n;
       i += std::size_t{gridDim.x} * blockDim.x)
    x[i] = x[i] / d;
}

__global__ void zero_non_finite_kernel(float* x, std::size_t n) {
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n;
       i += std::size_t{gridDim.x} * blockDim.x)
    if (!isfinite(x[i])) x[i] = 0.0f;
}

__global__ void flag_kernel(const float* x, const float* res, std::size_t n,
                            unsigned long long* flag, unsigned long long value) {
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n;
       i += std::size_t{gridDim.x} * blockDim.x) {
    const float v = res ? x[i] + res[i] : x[i];
    if (!isfinite(v)) {
      *flag = value;  // every writer writes the same value
      return;
    }
  }
}

}  // namespace

CudaExecutor::CudaExecutor(cudaStream_t stream) : stream_(stream), status_(std::make_unique<Status>()) {}
CudaExecutor::~CudaExecutor() {
  if (zeroed_) cudaEventDestroy(zeroed_);
}

void CudaExecutor::set_stream(cudaStream_t s) noexcept {
  stream_ = s;
  // The workspace was zeroed on the legacy default stream, which a cudaStreamNonBlocking
  // stream does not wait for: the run's stream waits for that zeroing through an event.
  if (zeroed_ && cudaStreamWaitEvent(s, zeroed_, 0) != cudaSuccess) cudaGetLastError();
}

void* CudaExecutor::allocate(std::size_t bytes) {
  void* p = nullptr;
  check_cuda(cudaMalloc(&p, bytes), "cudaMalloc (plan workspace)");
  check_cuda(cudaMemsetAsync(p, 0, bytes, cudaStreamLegacy), "cudaMemsetAsync (plan workspace)");
  if (!zeroed_)
    check_cuda(cudaEventCreateWithFlags(&zeroed_, cudaEventDisableTiming), "cudaEventCreate (plan workspace)");
  check_cuda(cudaEventRecord(zeroed_, cudaStreamLegacy), "cudaEventRecord (plan workspace)");
  return p;
}

void CudaExecutor::release(void* p) noexcept {
  cudaFree(p);
  cudaGetLastError();
}

std::size_t CudaExecutor::encode(const Codec& c, const void* in, DType t, std::size_t n,
                                 std::uint64_t goff, std::uint64_t seed, std::uint64_t step,
                                 std::byte* out, std::size_t cap, float* residual) {
  return encode_async(c, in, t, n, goff, seed, step, out, cap, residual, *status_, stream_);
}

void CudaExecutor::decode(const Codec& c, const std::byte* in, std::size_t bytes, void* out,
                          DType t, std::size_t n) {
  decode_async(c, in, bytes, out, t, n, *status_, stream_);
}

void CudaExecutor::decode_add(const Codec& c, const std::byte* in, std::size_t bytes, float* acc,
                              std::size_t n) {
  decode_add_async(c, in, bytes, acc, n, *status_, stream_);
}

void CudaExecutor::add(float* acc, const float* x, std::size_t n) {
  if (!n) return;
  add_kernel<<<blocks_for(n), kBlock, 0, stream_>>>(acc, x, n);
  check_cuda(cudaGetLastError(), "CUDA add kernel launch");
}

void CudaExecutor::divide(float* x, std::size_t n, int p) {
  if (!n || p == 1) return;
  divide_kernel<<<blocks_for(n), kBlock, 0, stream_>>>(x, n, static_cast<float>(p));
  check_cuda(cudaGetLastError(), "CUDA divide kernel launch");
}

void CudaExecutor::copy(void* dst, const void* src, std::size_t bytes) {
  if (!bytes || dst == src) return;
  check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream_), "cudaMemcpyAsync (executor copy)");
}

void CudaExecutor::zero(void* dst, std::size_t bytes) {
  if (bytes) check_cuda(cudaMemsetAsync(dst, 0, bytes, stream_), "cudaMemsetAsync (executor zero)");
}

void CudaExecutor::zero_non_finite(float* x, std::size_t n) {
  if (!n) return;
  zero_non_finite_kernel<<<blocks_for(n), kBlock, 0, stream_>>>(x, n);
  check_cuda(cudaGetLastError(), "CUDA zero_non_finite kernel launch");
}

void CudaExecutor::flag_non_finite(const float* x, const float* res, std::size_t n,
                                   std::uint64_t* flag, std::uint64_t value) {
  if (!n) return;
  flag_kernel<<<blocks_for(n), kBlock, 0, stream_>>>(x, res, n,
                                                     reinterpret_cast<unsigned long long*>(flag),
                                                     static_cast<unsigned long long>(value));
  check_cuda(cudaGetLastError(), "CUDA flag_non_finite kernel launch");
}

// Synchronous by contract (residual file, stats): they wait for this stream only.
void CudaExecutor::to_host(void* host, const void* src, std::size_t bytes) {
  if (!bytes) return;
  check_cuda(cudaMemcpyAsync(host, src, bytes, cudaMemcpyDefault, stream_), "cudaMemcpyAsync (to host)");
  check_cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize (to host)");
}

void CudaExecutor::from_host(void* dst, const void* host, std::size_t bytes) {
  if (!bytes) return;
  check_cuda(cudaMemcpyAsync(dst, host, bytes, cudaMemcpyDefault, stream_), "cudaMemcpyAsync (from host)");
  check_cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize (from host)");
}

void CudaExecutor::finish(double timeout_s) { status_->check(stream_, timeout_s); }

}  // namespace gradwire::cuda
