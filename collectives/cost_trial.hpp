// Whole runs of the two candidates behind "auto" (the engine's dense allreduce and the
// compressed algorithm), timed on this rank: what the cost model decides from
// (docs/compressed-collectives.md, "Cost model"). Timing whole runs, not their parts, is the
// point: when ranks share cores every synchronising step of a run pays for scheduling, and
// only a whole run pays it as often as the real one does.
#pragma once

#include <functional>
#include <string>

#include "collectives/algorithms.hpp"
#include "transport/transport.hpp"

namespace gradwire::coll {

struct TrialTimes {
  double dense_s = 0;       // this rank's median of the dense allreduce
  double compressed_s = 0;  // and of the compressed algorithm
};

// Runs the dense allreduce and `compressed` ("sra" or "sparse-allgather") on t for p.count
// elements: one warm-up each, then `reps` of each, alternating so that a burst of other load
// hits both alike. `sync` starts every run on all ranks together (a barrier); `drive` blocks
// until the algorithm's run is complete (the plan's polling loop). `dense`, when given, is
// the dense run as the plan would make it (in, out, count; e.g. MPI's blocking allreduce);
// otherwise make_dense_allreduce on t. Collective over t.
using DenseRun = std::function<void(const float*, float*, std::size_t)>;
TrialTimes time_candidates(Transport& t, const AlgoParams& p, const std::string& compressed,
                           int reps, const std::function<void()>& sync,
                           const std::function<void(Algorithm&)>& drive,
                           const DenseRun& dense = nullptr);

}  // namespace gradwire::coll
