// The chunked-pipeline switch shared by the compressed algorithms (issue 13, "Overlap"):
// GRADWIRE_OVERLAP=1 pipelines compressed allgather, the sparse path and SRA's scatter on host
// transports; GRADWIRE_OVERLAP_CHUNK=N (elements, > 0) sets the chunk size of the allgather's
// pipeline (and implies GRADWIRE_OVERLAP=1). Off by default: on the loaded 2-core machine it
// was measured on it did not pay (bench/results/overlap-allgather-sparse.md).
#pragma once

#include <cstddef>

#include "collectives/algorithms.hpp"

namespace gradwire::coll {

// Elements per pipelined chunk when a default chunk is not asked for: 2^18 (1 MB of float32).
constexpr std::size_t kOverlapChunk = std::size_t{1} << 18;

// The chunk size an algorithm built with p over t pipelines with: p.overlap_chunk when set,
// else the environment's; 0 (the plain order) on device executors and device transports, and
// when neither asks for it.
std::size_t overlap_chunk(const Transport& t, const AlgoParams& p);

}  // namespace gradwire::coll
