#include "collectives/staging.hpp"

#include "gradwire/config.hpp"
#include "request_state.hpp"

#if GRADWIRE_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace gradwire::detail {

#if GRADWIRE_HAVE_CUDA
namespace {

void check(cudaError_t e, const char* what, const Communicator::Impl& c, const CallInfo& call) {
  if (e == cudaSuccess) return;
  cudaGetLastError();
  c.fail(ErrorCode::Cuda, call, std::string(what) + " failed: " + cudaGetErrorString(e));
}

// Polls like the NCCL backend's events: a stuck stream becomes the communicator's timeout.
template <class Query>
void wait_for(Query query, const char* what, const Communicator::Impl& c, const CallInfo& call) {
  poll_until_done(c, call, c.policy, [&] {
    const cudaError_t e = query();
    if (e != cudaSuccess && e != cudaErrorNotReady) check(e, what, c, call);
    return e == cudaSuccess;
  });
}

}  // namespace

std::string PinnedStaging::prepare(std::size_t in_bytes, std::size_t out_bytes, bool in_place,
                                   int rank) {
  std::string why;
  auto failed = [&](cudaError_t e, const std::string& what) {
    cudaGetLastError();
    why = "device-memory plan: " + what + " failed on rank " + std::to_string(rank) + ": " +
          cudaGetErrorString(e);
    release();
    return why;
  };
  in_bytes_ = in_bytes;
  out_bytes_ = out_bytes;
  cudaError_t e = cudaSuccess;
  if (in_bytes > 0 && (e = cudaHostAlloc(&in_, in_bytes, cudaHostAllocPortable)) != cudaSuccess)
    return failed(e, "cudaHostAlloc of " + std::to_string(in_bytes) + " bytes");
  if (in_place) {
    out_ = in_;
  } else if (out_bytes > 0 &&
             (e = cudaHostAlloc(&out_, out_bytes, cudaHostAllocPortable)) != cudaSuccess) {
    return failed(e, "cudaHostAlloc of " + std::to_string(out_bytes) + " bytes");
  }
  cudaEvent_t ev = nullptr;
  if ((e = cudaEventCreateWithFlags(&ev, cudaEventDisableTiming)) != cudaSuccess)
    return failed(e, "cudaEventCreate");
  copied_ = ev;
  return why;
}

void PinnedStaging::release() noexcept {
  if (copied_) {
    cudaEventSynchronize(static_cast<cudaEvent_t>(copied_));  // the copy back reads out_
    cudaEventDestroy(static_cast<cudaEvent_t>(copied_));
  }
  if (out_ && out_ != in_) cudaFreeHost(out_);
  if (in_) cudaFreeHost(in_);
  cudaGetLastError();
  copied_ = in_ = out_ = nullptr;
}

void PinnedStaging::down(const void* src, std::size_t bytes, void* stream,
                         const Communicator::Impl& c, const CallInfo& call) {
  const auto s = static_cast<cudaStream_t>(stream);
  const auto ev = static_cast<cudaEvent_t>(copied_);
  // The previous run's copy back may still read out_ (it may have used another stream).
  wait_for([&] { return cudaEventQuery(ev); }, "cudaEventQuery (previous copy back)", c, call);
  if (bytes > 0)
    check(cudaMemcpyAsync(in_, src, bytes, cudaMemcpyDeviceToHost, s),
          "cudaMemcpyAsync (device to pinned)", c, call);
  wait_for([&] { return cudaStreamQuery(s); }, "cudaStreamQuery", c, call);
}

void PinnedStaging::up(void* dst, std::size_t bytes, void* stream, bool wait,
                       const Communicator::Impl& c, const CallInfo& call) {
  const auto s = static_cast<cudaStream_t>(stream);
  const auto ev = static_cast<cudaEvent_t>(copied_);
  if (bytes > 0)
    check(cudaMemcpyAsync(dst, out_, bytes, cudaMemcpyHostToDevice, s),
          "cudaMemcpyAsync (pinned to device)", c, call);
  check(cudaEventRecord(ev, s), "cudaEventRecord", c, call);
  if (wait) wait_for([&] { return cudaEventQuery(ev); }, "cudaEventQuery (copy back)", c, call);
}

void wait_stream(void* stream, const Communicator::Impl& c, const CallInfo& call) {
  const auto s = static_cast<cudaStream_t>(stream);
  wait_for([&] { return cudaStreamQuery(s); }, "cudaStreamQuery (result)", c, call);
}

#else  // no CUDA in this build

std::string PinnedStaging::prepare(std::size_t, std::size_t, bool, int) {
  return "device-memory plan: gradwire was built without CUDA (GRADWIRE_CUDA=OFF); use "
         "Memory::Host";
}
void PinnedStaging::release() noexcept {}
void PinnedStaging::down(const void*, std::size_t, void*, const Communicator::Impl& c,
                         const CallInfo& call) {
  c.fail(ErrorCode::Unsupported, call, "device-memory plan: gradwire was built without CUDA");
}
void PinnedStaging::up(void*, std::size_t, void*, bool, const Communicator::Impl& c,
                       const CallInfo& call) {
  c.fail(ErrorCode::Unsupported, call, "device-memory plan: gradwire was built without CUDA");
}
void wait_stream(void*, const Communicator::Impl& c, const CallInfo& call) {
  c.fail(ErrorCode::Unsupported, call, "device-memory plan: gradwire was built without CUDA");
}

#endif

}  // namespace gradwire::detail
