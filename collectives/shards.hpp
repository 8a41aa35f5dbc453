// The owned shards of scatter-reduce-allgather (SRA): rank r reduces elements
// [off[r], off[r+1]). Even by default; with PlanConfig::balance_shards (or
// GRADWIRE_BALANCE_SHARDS=1) sized by each rank's measured codec throughput, so that a slower
// rank owns less (the workload balancing of ComDML, arXiv 2405.00839, inside one collective;
// docs/compressed-collectives.md, "Uneven ranks").
#pragma once

#include <mpi.h>

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "collectives/cost_model.hpp"
#include "gradwire/codec.hpp"

namespace gradwire::coll {

// Shard boundaries (P + 1 offsets) cut at multiples of `unit` (a codec bucket: chunks cut at
// bucket multiples encode exactly as the whole would). Empty weights: the even split, rank r
// from unit * floor(units * r / P). Otherwise rank r's share is weights[r] / sum(weights) of
// the units, boundaries rounded to the nearest unit; a share may round to nothing (that rank
// then owns no shard). Bad weights (not P of them, or any not finite or <= 0) are
// InvalidArgument, naming which.
std::vector<std::size_t> shard_offsets(std::size_t n, std::size_t unit, int P,
                                       const std::vector<double>& weights = {});
void check_shard_weights(const std::vector<double>& weights, int P);

// Whether plans balance their shards: GRADWIRE_BALANCE_SHARDS (0 or 1) when set, else
// `field` (PlanConfig::balance_shards). Another value is InvalidArgument.
bool balance_shards_setting(bool field);

// Each rank's codec cost per element (encode + decode_add, as the probe measures it), gathered
// so that every rank holds every rank's figures in rank order (identical bits everywhere).
// Collective over comm.
struct RankCosts {
  std::vector<double> enc, dec;  // seconds per element, by rank
};
RankCosts gather_rank_costs(MPI_Comm comm, const Codec& codec,
                            const std::function<void(int, const char*)>& check);

// Weights for shard_offsets from those costs: rank r's is 1 / (its per-element cost of owning
// a shard: P decode_adds and one encode), rounded to sixteenths of the fastest rank's so that
// noise moves few boundaries. Empty (the even split) when no rank is slower than the fastest
// by more than `spread` (a fraction): the gain would be within the noise.
std::vector<double> shard_weights(const RankCosts& rc, double spread = 0.2);

// The model's SRA time over P ranks with these shards and per-rank codec costs (`in` gives
// the link): the slowest encode of the whole buffer, then the slowest owner's reduction
// (decode_add of P chunks and the re-encode of its shard), the slowest decode of the whole
// result, two exchanges of the mean message (a shared link: one host, or one emulated link;
// on a link per rank the largest shard's messages would bound them instead).
double predict_sra_shards(const CostInputs& in, const RankCosts& rc, const Codec& codec,
                          const std::vector<std::size_t>& off);

}  // namespace gradwire::coll
