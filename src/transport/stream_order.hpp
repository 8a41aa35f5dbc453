// Ordering a device call with the caller's work (CUDA builds; docs/collectives.md, "Streams
// and ordering"): NCCL's calls take a stream, PyTorch's collectives follow the current
// stream; gradwire's communicator-level device calls follow the caller's stream, which for
// them is the default stream (the legacy default stream, with which every blocking stream
// synchronises). They run on a private stream, so the two are joined by events, never by a
// device-wide synchronisation:
//   enter(): the private stream waits for everything already enqueued on the caller's;
//   leave(): the caller's stream waits for everything enqueued on the private one.
// A pageable cudaMemcpy to the device, or a cudaMemset, issued before a collective on the
// default stream is thereby seen by it, although either may return before its data lands.
#pragma once

#include <cuda_runtime.h>

namespace gradwire::detail {

class StreamOrder {
 public:
  StreamOrder() = default;
  ~StreamOrder();
  StreamOrder(const StreamOrder&) = delete;
  StreamOrder& operator=(const StreamOrder&) = delete;
  // Makes the two events, on the current device (that of both streams).
  cudaError_t init() noexcept;
  cudaError_t enter(cudaStream_t caller, cudaStream_t own) noexcept;
  cudaError_t leave(cudaStream_t own, cudaStream_t caller) noexcept;

 private:
  // One event each way is enough: cudaStreamWaitEvent waits for the record that precedes
  // it, and later records do not change what an earlier wait waits for.
  cudaEvent_t entered_ = nullptr, left_ = nullptr;
};

}  // namespace gradwire::detail
