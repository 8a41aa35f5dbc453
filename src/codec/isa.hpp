// Runtime choice of the host codecs' hot loops: the same source compiled twice, once for the
// baseline ISA and once with AVX2 (GW_TARGET_AVX2), picked per call from the CPU's features.
// Both produce the same bits (tests/unit/codec_bits_test.cpp runs both against recorded
// hashes), so a binary built for baseline x86-64 runs everywhere and uses AVX2 where present.
#pragma once

#if defined(__x86_64__) || defined(__i386__)
#define GW_HAVE_AVX2_KERNELS 1
#define GW_TARGET_AVX2 [[gnu::target("avx2")]]
#else
#define GW_HAVE_AVX2_KERNELS 0
#define GW_TARGET_AVX2
#endif

namespace gradwire::detail {

// True when the CPU has AVX2 and the generic kernels are not forced.
bool use_avx2() noexcept;

// For tests and benchmarks: force the baseline kernels (true) or let the CPU decide (false).
// Also set by the environment variable GRADWIRE_CODEC_ISA=generic. Not thread safe against
// concurrent encodes; call it between them.
void force_generic_kernels(bool on) noexcept;

}  // namespace gradwire::detail
