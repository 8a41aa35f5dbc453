// Building blocks of the shared-grid integer reduction (issue 4): every rank measures its
// buckets, the ranks agree on one grid per bucket (allreduce MIN of lo, MAX of hi), each
// rank quantizes onto that grid, the integer codes are summed, and the sum is dequantized
// once. The math is the Quantize codec's (math/quant.hpp), so bounds and random bits match
// it: with stochastic rounding each rank's code is unbiased and within one step.
// Buckets are relative to x[0], as in the codec.
#pragma once

#include <cstddef>
#include <cstdint>

#include "gradwire/codec.hpp"

namespace gradwire::grid {

std::size_t bucket_count(std::size_t n, std::uint32_t bucket);

// lo[b], hi[b]: min and max of bucket b (signed zeros as +0). Non-finite input is an
// InvalidArgument error.
void bucket_minmax(const float* x, std::size_t n, std::uint32_t bucket, float* lo, float* hi);

// q[i] in [0, levels] on the grid of its bucket, lo[b] + q * step(lo[b], hi[b], levels);
// values outside [lo, hi] clamp. Stochastic rounding uses the codec's Philox stream keyed by
// (seed, step, global_offset + i). levels = 2^bits - 1 for a b-bit code, but any value up to
// 2^24 - 1 works (headroom for the sum: nranks * levels must fit the integer type).
void quantize(const float* x, std::size_t n, std::uint32_t bucket, const float* lo,
              const float* hi, std::uint32_t levels, Rounding round, std::uint64_t seed,
              std::uint64_t step, std::uint64_t global_offset, std::uint32_t* q);

// out[i] = terms * lo[b] + qsum[i] * step(b): the sum of `terms` ranks' dequantized codes.
void dequantize_sum(const std::uint32_t* qsum, std::size_t n, std::uint32_t bucket,
                    const float* lo, const float* hi, std::uint32_t levels, std::uint32_t terms,
                    float* out);

// Per-element bound of one rank's code on a bucket grid (as Codec::bucket_error_bound).
float error_bound(float lo, float hi, std::uint32_t levels, Rounding round);

}  // namespace gradwire::grid
