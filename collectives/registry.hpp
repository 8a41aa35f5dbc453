// The algorithms a plan chooses from: one entry per algorithm file (collectives/algorithms/),
// each saying which agreed configurations it can run and how to make it. Plan::Impl::choose()
// resolves "auto" (collectives/registry.cpp: the static rule; then the cost model), looks the
// name up here and asks the entry; a new algorithm is one file and one line in registry.cpp.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "collectives/algorithms.hpp"
#include "gradwire/plan.hpp"

namespace gradwire::coll {

// What an entry may look at to accept or refuse: the agreed configuration.
struct Selection {
  PlanCollective collective = PlanCollective::Allreduce;
  DType dtype = DType::Float32;
  ReduceOp op = ReduceOp::Sum;
  CodecSpec codec;
  Memory memory = Memory::Host;
};

// Why an entry cannot run a selection (empty `why`: it can). The code is the one the plan's
// constructor fails with, on every rank.
struct Refusal {
  ErrorCode code = ErrorCode::InvalidArgument;
  std::string why;
  bool ok() const noexcept { return why.empty(); }
};

// What make() receives. `local`/`leaders`/`global_size` only for entries with node_comms
// (leaders is null on ranks that lead no node).
struct Build {
  Transport& t;
  const AlgoParams& p;
  std::uint32_t powersgd_rank = 0;
  const std::vector<MatrixShape>* shapes = nullptr;
  Transport* local = nullptr;
  Transport* leaders = nullptr;
  int global_size = 1;
};

struct AlgorithmEntry {
  const char* name;                 // PlanStats::algorithm
  PlanCollective collective;
  bool nameable;                    // a value of PlanConfig::algorithm (else picked by a rule)
  bool node_comms;                  // needs the node and leaders communicators (hier)
  Refusal (*supports)(const Selection&);
  std::unique_ptr<Algorithm> (*make)(const Build&);
  // Whether it runs on a device executor for this selection (device plans then keep their
  // data on the GPU and move only messages; the others stage the whole buffer through host
  // memory and run on the host). Null: never.
  bool (*device_native)(const Selection&) = nullptr;
};

const std::vector<AlgorithmEntry>& algorithms();
// The entry for this collective and name; null when there is none.
const AlgorithmEntry* find_algorithm(PlanCollective c, const std::string& name);
// "auto" and every nameable algorithm (of `only`'s plans, when given), in registry order,
// comma separated (error messages).
std::string accepted_names(std::optional<PlanCollective> only = std::nullopt);
// Whether `name` is "auto" or the name of a nameable entry of any collective.
bool known_name(const std::string& name);
// "auto"'s static rule, before the cost model: the algorithm of this collective for this
// codec and dtype (multi_node: the communicator spans several nodes, some with several ranks).
std::string static_choice(const Selection& s, bool multi_node);

// "allreduce", "allgather", "reduce-scatter" (messages, call names).
const char* collective_name(PlanCollective c);

}  // namespace gradwire::coll
