// Marks functions that compile for host and device alike: the codecs' math is written once
// and included by both the host codecs and the CUDA kernels (docs/architecture.md).
#pragma once

#if defined(__CUDACC__)
#define GW_HD __host__ __device__ __forceinline__
#else
#define GW_HD inline
#endif
