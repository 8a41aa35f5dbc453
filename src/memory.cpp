#include "current_device.hpp"
#include "device_backend.hpp"
#include "gradwire/config.hpp"

#if GRADWIRE_HAVE_CUDA
#include <cuda_runtime.h>
#include <dlfcn.h>
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

#if GRADWIRE_HAVE_CUDA
namespace {

// Whether GPU `ordinal`'s primary context is active, asked of the driver
// (cuDevicePrimaryCtxGetState, as PyTorch's hasPrimaryContext does) because any runtime query
// would itself create a context, on GPU 0 when the thread never chose one: hundreds of MB
// there for every rank of a host-only job. Only a driver the runtime has already loaded is
// used (RTLD_NOLOAD): without one no device memory can exist.
struct Driver {
  int (*count)(int*) = nullptr;
  int (*get)(int*, int) = nullptr;
  int (*state)(int, unsigned*, int*) = nullptr;
};

// Read once; gradwire asks only after cudaGetDeviceCount (Communicator's constructor), which
// loads the driver where there is one.
const Driver* driver() noexcept {
  static const Driver d = [] {
    Driver r;
    if (void* lib = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_NOLOAD)) {
      r.count = reinterpret_cast<int (*)(int*)>(dlsym(lib, "cuDeviceGetCount"));
      r.get = reinterpret_cast<int (*)(int*, int)>(dlsym(lib, "cuDeviceGet"));
      r.state = reinterpret_cast<int (*)(int, unsigned*, int*)>(dlsym(lib, "cuDevicePrimaryCtxGetState"));
    }
    return r;
  }();
  return d.count ? &d : nullptr;
}

bool primary_active(const Driver& d, int ordinal) noexcept {
  int dev = 0, active = 0;
  unsigned flags = 0;
  return d.get && d.state && d.get(&dev, ordinal) == 0 && d.state(dev, &flags, &active) == 0 &&
         active != 0;
}

// A GPU to ask on without creating a context: `preferred` when its context is active, else
// the first active one; -1 when none is (then no device memory exists).
int active_device(int preferred) noexcept {
  const Driver* d = driver();
  int n = 0;
  if (!d || !d->count || d->count(&n) != 0) return -1;
  if (preferred >= 0 && preferred < n && primary_active(*d, preferred)) return preferred;
  for (int i = 0; i < n; ++i)
    if (primary_active(*d, i)) return i;
  return -1;
}

}  // namespace
#endif

bool is_device_pointer(const void* p) noexcept {
#if GRADWIRE_HAVE_CUDA
  int current = -1;
  if (cudaGetDevice(&current) != cudaSuccess) cudaGetLastError();
  // No active context anywhere: no device memory exists yet, and asking would make one.
  const int active = active_device(current);
  if (active < 0) return false;
  const CurrentDevice on(active);  // asked in a context that exists: the runtime makes none
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
