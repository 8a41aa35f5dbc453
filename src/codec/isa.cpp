#include "codec/isa.hpp"

#include <atomic>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#include <cstdlib>
#include <cstring>

namespace gradwire::detail {

namespace {

// The AVX2 level also uses F16C (vcvtps2ph / vcvtph2ps), present on every AVX2 CPU made;
// checked all the same (CPUID.1:ECX bit 29).
KernelLevel cpu_level() noexcept {
#if GW_HAVE_AVX2_KERNELS
  __builtin_cpu_init();
  unsigned a = 0, b = 0, c = 0, d = 0;
  const bool f16c = __get_cpuid(1, &a, &b, &c, &d) != 0 && (c & bit_F16C) != 0;
  if (!f16c || !__builtin_cpu_supports("avx2")) return KernelLevel::Generic;
  // VL for the 256-bit forms of the narrowing moves that pack 2-bit codes (every AVX-512
  // CPU but Xeon Phi has it).
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")) return KernelLevel::Avx512;
  return KernelLevel::Avx2;
#else
  return KernelLevel::Generic;
#endif
}

KernelLevel env_cap() noexcept {
  const char* v = std::getenv("GRADWIRE_CODEC_ISA");
  if (v == nullptr) return KernelLevel::Avx512;
  if (std::strcmp(v, "generic") == 0) return KernelLevel::Generic;
  if (std::strcmp(v, "avx2") == 0) return KernelLevel::Avx2;
  return KernelLevel::Avx512;
}

std::atomic<int>& cap() {
  static std::atomic<int> c{static_cast<int>(env_cap())};
  return c;
}

}  // namespace

KernelLevel kernel_level() noexcept {
  static const int has = static_cast<int>(cpu_level());
  const int c = cap().load(std::memory_order_relaxed);
  return static_cast<KernelLevel>(has < c ? has : c);
}

void limit_kernels(KernelLevel max) noexcept {
  cap().store(static_cast<int>(max), std::memory_order_relaxed);
}

}  // namespace gradwire::detail
