// A codec executor: where the codec and the few element operations of the compressed
// algorithms run, for one memory space (DESIGN.md, "Layers": codec executors). An algorithm
// is written once over a transport, an executor and workspace the executor allocates; the
// same algorithm then serves host buffers (HostExecutor: the SIMD host codec, synchronous)
// and device buffers (cuda::CudaExecutor: the CUDA kernels, enqueued on one stream).
//
// Errors: a host executor throws at once (a non-finite input to a quantizing codec is
// InvalidArgument from encode, a malformed message WireFormat from decode). A device executor
// records data-dependent failures on the device and throws them from finish(); calls enqueued
// after a recorded failure skip their work. Algorithms that must agree on such a failure use
// flag_non_finite, whose flag they exchange (docs/compressed-collectives.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

#include "gradwire/codec.hpp"
#include "gradwire/types.hpp"

namespace gradwire::exec {

class Executor {
 public:
  virtual ~Executor() = default;
  virtual bool on_device() const noexcept = 0;  // buffers in GPU memory
  virtual const char* name() const noexcept = 0;  // PlanStats::executor: "host", "cuda"
  virtual void* stream() const noexcept { return nullptr; }  // cudaStream_t of a device one

  // Workspace in this executor's memory, zero-filled (an allocation, not for hot paths).
  virtual void* allocate(std::size_t bytes) = 0;
  virtual void release(void* p) noexcept = 0;

  // As Codec::encode / decode / decode_add, every pointer in this executor's memory.
  // encode returns the message size for dense codecs; a device executor returns 0 for
  // sparse ones (their size is known only at finish()).
  virtual std::size_t encode(const Codec& c, const void* in, DType t, std::size_t n,
                             std::uint64_t goff, std::uint64_t seed, std::uint64_t step,
                             std::byte* out, std::size_t cap, float* residual) = 0;
  virtual void decode(const Codec& c, const std::byte* in, std::size_t bytes, void* out, DType t,
                      std::size_t n) = 0;
  virtual void decode_add(const Codec& c, const std::byte* in, std::size_t bytes, float* acc,
                          std::size_t n) = 0;

  // Element operations on float32 (memmove semantics for copy).
  virtual void add(float* acc, const float* x, std::size_t n) = 0;      // acc += x
  virtual void divide(float* x, std::size_t n, int p) = 0;              // x /= p (avg)
  virtual void copy(void* dst, const void* src, std::size_t bytes) = 0;
  virtual void zero(void* dst, std::size_t bytes) = 0;
  virtual void zero_non_finite(float* x, std::size_t n) = 0;            // NaN/Inf -> 0
  // *flag = value when some x[i] (+ res[i], when res) is not finite; untouched otherwise.
  virtual void flag_non_finite(const float* x, const float* res, std::size_t n,
                               std::uint64_t* flag, std::uint64_t value) = 0;

  // Copies between this executor's memory and host memory, complete on return.
  virtual void to_host(void* host, const void* src, std::size_t bytes) = 0;
  virtual void from_host(void* dst, const void* host, std::size_t bytes) = 0;

  // Waits for the work enqueued so far (device: on the stream, bounded by timeout_s) and
  // throws the first failure recorded since the last finish(). Host: nothing to wait for.
  virtual void finish(double timeout_s) = 0;
};

// Workspace of n elements of T owned by an executor (zero-filled at construction, freed by
// it): the algorithms' buffers, in the memory their executor works on.
template <class T>
class Work {
 public:
  Work() = default;
  Work(Executor& x, std::size_t n)
      : x_(&x), p_(n ? static_cast<T*>(x.allocate(n * sizeof(T))) : nullptr), n_(n) {}
  ~Work() {
    if (p_) x_->release(p_);
  }
  Work(Work&& o) noexcept : x_(o.x_), p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  Work& operator=(Work&& o) noexcept {
    if (this != &o) {
      if (p_) x_->release(p_);
      x_ = o.x_;
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }
  T* data() const noexcept { return p_; }
  std::size_t size() const noexcept { return n_; }
  std::size_t bytes() const noexcept { return n_ * sizeof(T); }
  bool empty() const noexcept { return n_ == 0; }

 private:
  Executor* x_ = nullptr;
  T* p_ = nullptr;
  std::size_t n_ = 0;
};

// The host executor: the host codec (SIMD where the CPU has it), synchronous. One shared
// instance: it holds no state.
Executor& host_executor();

}  // namespace gradwire::exec
