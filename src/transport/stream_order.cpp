#include "transport/stream_order.hpp"

namespace gradwire::detail {

StreamOrder::~StreamOrder() {
  if (entered_) cudaEventDestroy(entered_);
  if (left_) cudaEventDestroy(left_);
}

cudaError_t StreamOrder::init() noexcept {
  cudaError_t e = cudaSuccess;
  if (!entered_) e = cudaEventCreateWithFlags(&entered_, cudaEventDisableTiming);
  if (e == cudaSuccess && !left_) e = cudaEventCreateWithFlags(&left_, cudaEventDisableTiming);
  return e;
}

cudaError_t StreamOrder::enter(cudaStream_t caller, cudaStream_t own) noexcept {
  cudaError_t e = cudaEventRecord(entered_, caller);
  if (e == cudaSuccess) e = cudaStreamWaitEvent(own, entered_, 0);
  return e;
}

cudaError_t StreamOrder::leave(cudaStream_t own, cudaStream_t caller) noexcept {
  cudaError_t e = cudaEventRecord(left_, own);
  if (e == cudaSuccess) e = cudaStreamWaitEvent(caller, left_, 0);
  return e;
}

}  // namespace gradwire::detail
