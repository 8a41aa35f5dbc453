// Elastic membership: growing a communicator with processes started by MPI_Comm_spawn, after a
// lost rank (Communicator::respawn) or at a step boundary (Communicator::grow), and the
// joiner's side of it (the constructor of a spawned process). docs/fault-tolerance.md,
// "Growing back", has the protocol and the Open MPI 5.0 problems it steers around.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "call_info.hpp"
#include "gradwire/communicator.hpp"

namespace gradwire::detail {

// Collective over `base` (healthy: the survivors' communicator, or the one being grown):
// spawns one process per entry of joiner_keys and makes a communicator of base's ranks and
// the joiners, ordered by key (my_key here, joiner_keys[j] for joiner j). Every step is
// bounded by base's GRADWIRE_INIT_TIMEOUT and its outcome agreed (MPIX_Comm_agree on base):
// on failure every rank returns `base` itself. resume_step and state_root of the result
// (of base on failure) are set on every rank.
std::shared_ptr<Communicator::Impl> grow_onto(const std::shared_ptr<Communicator::Impl>& base,
                                              int my_key, const std::vector<int>& joiner_keys,
                                              std::uint64_t step, const CallInfo& call);

// Whether this process was spawned by grow_onto (a parent communicator and GRADWIRE_JOIN=1).
bool spawned_to_join();

// The joiner's constructor: meets the spawning ranks and returns its place in the grown
// communicator. Throws PeerFailed if they abandoned the join, Timeout past the deadline.
std::shared_ptr<Communicator::Impl> join_running_job(const Options& options);

}  // namespace gradwire::detail
