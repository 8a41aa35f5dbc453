#include "current_device.hpp"

#include "gradwire/config.hpp"

#if GRADWIRE_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace gradwire::detail {

#if GRADWIRE_HAVE_CUDA
CurrentDevice::CurrentDevice(int device) noexcept {
  if (device < 0) return;
  int current = -1;
  cudaError_t e = cudaGetDevice(&current);
  if (e == cudaSuccess && current == device) return;
  if (e == cudaSuccess) e = cudaSetDevice(device);
  if (e == cudaSuccess) {
    previous_ = current;
    return;
  }
  cudaGetLastError();
  try {
    error_ = "cudaSetDevice(" + std::to_string(device) + ") failed: " + cudaGetErrorString(e);
  } catch (...) {
  }
}

CurrentDevice::~CurrentDevice() {
  if (previous_ >= 0) cudaSetDevice(previous_);
}
#else
CurrentDevice::CurrentDevice(int) noexcept {}
CurrentDevice::~CurrentDevice() = default;
#endif

}  // namespace gradwire::detail
