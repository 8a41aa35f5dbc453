// Compressed reduce-scatter for sharded training (ZeRO / FSDP): rank r ends with block r of
// the reduced vector. docs/compressed-collectives.md gives the algorithm and its bound.
#pragma once

#include <memory>

#include "collectives/algorithms.hpp"

namespace gradwire::coll {

// p.count is the block each rank receives; the input holds p.count * size elements, block j at
// j * p.count. Codec none: the blocks travel as raw float32 (dense); dense codecs only.
std::unique_ptr<Algorithm> make_reduce_scatter(Transport& t, const AlgoParams& p);

}  // namespace gradwire::coll
