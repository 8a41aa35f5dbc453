// Runtime choice of the host codecs' hot loops: the same source compiled for the baseline
// ISA and with AVX2 (GW_TARGET_AVX2; the level includes F16C for the fp16 codec), plus AVX-512
// (F and VL: GW_TARGET_AVX512) for the Philox generator and the quantizers' range and rounding,
// picked per call from the CPU's features. All produce the same bits
// (tests/unit/codec_bits_test.cpp runs every level against recorded hashes), so a binary
// built for baseline x86-64 runs everywhere and uses the wider units where present.
#pragma once

#if defined(__x86_64__) || defined(__i386__)
#define GW_HAVE_AVX2_KERNELS 1
#define GW_TARGET_AVX2 [[gnu::target("avx2")]]
#define GW_TARGET_F16C [[gnu::target("avx2,f16c")]]
#define GW_TARGET_AVX512 [[gnu::target("avx2,avx512f,avx512vl")]]
#else
#define GW_HAVE_AVX2_KERNELS 0
#define GW_TARGET_AVX2
#define GW_TARGET_F16C
#define GW_TARGET_AVX512
#endif

namespace gradwire::detail {

enum class KernelLevel : int { Generic = 0, Avx2 = 1, Avx512 = 2 };

// The widest level the CPU has, capped by limit_kernels / GRADWIRE_CODEC_ISA.
KernelLevel kernel_level() noexcept;
inline bool use_avx2() noexcept { return kernel_level() >= KernelLevel::Avx2; }
inline bool use_avx512() noexcept { return kernel_level() >= KernelLevel::Avx512; }

// For tests and benchmarks: cap the level (Avx512: no cap). The environment variable
// GRADWIRE_CODEC_ISA=generic|avx2 sets the initial cap. Not thread safe against concurrent
// encodes; call it between them.
void limit_kernels(KernelLevel max) noexcept;

}  // namespace gradwire::detail
