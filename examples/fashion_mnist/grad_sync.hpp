// Gradient averaging across ranks: one fused buffer, averaged by a gradwire::Plan with
// ReduceOp::Avg. The plan owns the codec's workspace and the error-feedback residual; with
// --codec none it runs the engine's dense allreduce.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <gradwire/communicator.hpp>
#include <gradwire/plan.hpp>

namespace fm {

struct SyncConfig {
  std::string codec = "none";
  std::string algo = "auto";
  bool error_feedback = true;
  std::uint64_t seed = 0;
  // Library-side options (gradwire::PlanConfig; docs/compressed-collectives.md).
  float momentum = 0.0f;  // > 0: the plan keeps the velocity (DGC momentum correction)
  bool masking = true;
  float clip_norm = 0.0f;
  std::uint64_t warmup_steps = 0;
  double warmup_density = 0.25;
  std::uint32_t powersgd_rank = 4;
  std::vector<gradwire::MatrixShape> shapes;  // the layers' matrices, for powersgd
};

class GradSync {
 public:
  // Collective: every rank must pass the same n and config (the plan checks it).
  GradSync(gradwire::Communicator& comm, std::size_t n, const SyncConfig& config);
  // The same over a shrunk communicator, taking over `from`'s error-feedback residual.
  GradSync(gradwire::Communicator& comm, const GradSync& from);
  // After a membership change (respawn): members pass their old GradSync, a joiner nullptr
  // (it starts with no residual); collective, with the same n and config everywhere.
  GradSync(gradwire::Communicator& comm, std::size_t n, const SyncConfig& config,
           const GradSync* from);

  // g (n floats) becomes the mean of every rank's g; bit-identical on all ranks.
  void average(float* g);

  std::size_t wire_bytes() const { return plan_.stats().wire_bytes; }  // sent, last step
  const std::string& algorithm() const { return plan_.stats().algorithm; }
  double seconds() const { return seconds_; }  // wall time of the last step

 private:
  static gradwire::PlanConfig plan_config(std::size_t n, const SyncConfig& c);
  gradwire::Plan plan_;
  double seconds_ = 0;
};

}  // namespace fm
