// The measurements behind the cost model (collectives/cost_model.hpp), made when an "auto"
// plan is created: a short probe on the plan's communicator, or figures kept from an earlier
// probe (in this process, or in the file named by GRADWIRE_COST_CACHE, keyed by host set and
// rank count). Collective; every rank returns the same figures (each the maximum over ranks).
#pragma once

#include <mpi.h>

#include <functional>
#include <string>

#include "collectives/cost_model.hpp"
#include "collectives/cost_trial.hpp"
#include "gradwire/codec.hpp"

namespace gradwire::coll {

struct CostMeasurement {
  CostInputs in;
  std::string source;  // where the figures came from: "link:<src> codec:<src>", src one of
                       // probe, memory (this process), cache-file
};

// `check` turns a failed MPI call into the plan's error (it throws).
CostMeasurement measure_costs(MPI_Comm comm, const Codec& codec,
                              const std::function<void(int, const char*)>& check);

// The cache file's key of comm: a hash of every rank's processor name (sorted) and the rank
// count. Collective.
std::string cost_cache_key(MPI_Comm comm, const std::function<void(int, const char*)>& check);

// Whole-run times of auto's two candidates (collectives/cost_trial.hpp) for `what` (the
// compressed algorithm, codec and options, no spaces) at n elements, each the maximum over
// ranks: from the cache file (a line `gradwire-cost-v1 <hash> <P> trial <what> <n> <dense_s>
// <compressed_s>`), this process's memory (where every rank has it), or `run` (this rank's
// times, appended to the cache file by rank 0). Collective.
struct TrialMeasurement {
  double dense_s = 0, compressed_s = 0;
  std::string source;  // "trial:<src>", src one of probe, memory, cache-file
};
TrialMeasurement measure_trial(MPI_Comm comm, const std::string& what, std::size_t n,
                               const std::function<TrialTimes()>& run,
                               const std::function<void(int, const char*)>& check);

// This rank's codec figures alone (enc, dec; the rest 0), not agreed: local.
CostInputs probe_codec_local(const Codec& codec);

// The maximum of each figure over comm's ranks (in place): what makes the choice agree.
void agree_costs(MPI_Comm comm, CostInputs& in,
                 const std::function<void(int, const char*)>& check);

}  // namespace gradwire::coll
