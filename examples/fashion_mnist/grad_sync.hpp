// Gradient averaging across ranks: one fused buffer, averaged by a gradwire::Plan (any codec
// and algorithm, error feedback kept by the plan) or, for the uncompressed baseline, by the
// engine's Communicator::allreduce(..., ReduceOp::Avg).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include <gradwire/communicator.hpp>

namespace fm {

struct SyncConfig {
  std::string codec = "none";
  std::string algo = "auto";
  bool error_feedback = true;
  std::uint64_t seed = 0;
};

class GradSync {
 public:
  // Collective: every rank must pass the same n and config.
  GradSync(gradwire::Communicator& comm, std::size_t n, const SyncConfig& config);
  ~GradSync();

  // g (n floats) becomes the mean of every rank's g; identical on all ranks.
  void average(float* g);

  std::size_t wire_bytes() const { return wire_bytes_; }  // this rank sent, last step
  double seconds() const { return seconds_; }              // wall time of the last step
  const std::string& algorithm() const { return algorithm_; }

 private:
  struct PlanHolder;
  gradwire::Communicator& comm_;
  std::size_t n_;
  std::unique_ptr<PlanHolder> plan_;
  std::size_t wire_bytes_ = 0;
  double seconds_ = 0;
  std::string algorithm_;
};

}  // namespace fm
