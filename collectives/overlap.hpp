// The chunked-pipeline switch shared by the compressed algorithms (issue 13, "Overlap"):
// GRADWIRE_OVERLAP=1 pipelines compressed allgather, the sparse path and SRA's scatter on host
// transports; GRADWIRE_OVERLAP_CHUNK=N (elements, > 0) sets the chunk size of the allgather's
// pipeline (and implies GRADWIRE_OVERLAP=1). Off by default: on the loaded 2-core machine it
// was measured on it did not pay (bench/results/overlap-allgather-sparse.md).
#pragma once

#include <cstddef>
#include <cstdint>

#include "collectives/algorithms.hpp"

namespace gradwire::coll {

// Elements per pipelined chunk when a default chunk is not asked for: 2^18 (1 MB of float32).
constexpr std::size_t kOverlapChunk = std::size_t{1} << 18;

// At most this many chunks per block: larger chunks beyond it (bounds the requests in flight).
constexpr std::size_t kMaxOverlapChunks = 256;

// The environment's setting, for the plan's agreement (every rank must pipeline alike):
// 0 off, else the chunk size (all ones: a value that is not one; the algorithm rejects it).
std::uint64_t overlap_setting() noexcept;

// The chunk a pipeline of `count` elements uses when asked for `chunk`: no more than
// kMaxOverlapChunks of them.
std::size_t pipeline_chunk(std::size_t count, std::size_t chunk);

// Operations per stage to reserve beyond the plain algorithms' for pipelines of `count`
// elements at P ranks under the environment's setting (MpiTransport's fixed capacity).
int overlap_ops(int P, std::size_t count);

// The chunk size an algorithm built with p over t pipelines with: p.overlap_chunk when set,
// else the environment's; 0 (the plain order) on device executors and device transports, and
// when neither asks for it.
std::size_t overlap_chunk(const Transport& t, const AlgoParams& p);

}  // namespace gradwire::coll
