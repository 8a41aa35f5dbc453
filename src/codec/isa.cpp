#include "codec/isa.hpp"

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace gradwire::detail {

namespace {

bool cpu_has_avx2() noexcept {
#if GW_HAVE_AVX2_KERNELS
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2");
#else
  return false;
#endif
}

bool env_forces_generic() noexcept {
  const char* v = std::getenv("GRADWIRE_CODEC_ISA");
  return v != nullptr && std::strcmp(v, "generic") == 0;
}

std::atomic<bool>& forced() {
  static std::atomic<bool> f{env_forces_generic()};
  return f;
}

}  // namespace

bool use_avx2() noexcept {
  static const bool has = cpu_has_avx2();
  return has && !forced().load(std::memory_order_relaxed);
}

void force_generic_kernels(bool on) noexcept { forced().store(on, std::memory_order_relaxed); }

}  // namespace gradwire::detail
