#include "device_backend.hpp"
#include "gradwire/config.hpp"

#if GRADWIRE_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace gradwire::detail {

bool cuda_device_present() noexcept {
#if GRADWIRE_HAVE_CUDA
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // no driver or no device: not an error for a host-only run
    return false;
  }
  return n > 0;
#else
  return false;
#endif
}

bool is_device_pointer(const void* p) noexcept {
#if GRADWIRE_HAVE_CUDA
  cudaPointerAttributes a{};
  if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
#else
  (void)p;
  return false;
#endif
}

}  // namespace gradwire::detail
