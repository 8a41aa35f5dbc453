#include "grad_sync.hpp"

#include <chrono>
#include <string>

namespace fm {

gradwire::PlanConfig GradSync::plan_config(std::size_t n, const SyncConfig& c) {
  gradwire::PlanConfig pc;
  pc.collective = gradwire::PlanCollective::Allreduce;
  pc.count = n;
  pc.dtype = gradwire::DType::Float32;
  pc.op = gradwire::ReduceOp::Avg;
  pc.codec = c.codec;
  pc.algorithm = c.algo;
  pc.error_feedback = c.error_feedback;
  pc.seed = c.seed;
  pc.memory = gradwire::Memory::Host;
  pc.momentum = c.momentum;
  pc.momentum_masking = c.masking;
  pc.clip_norm = c.clip_norm;
  pc.warmup_steps = c.warmup_steps;
  pc.warmup_density = c.warmup_density;
  pc.powersgd_rank = c.powersgd_rank;
  pc.shapes = c.shapes;
  return pc;
}

GradSync::GradSync(gradwire::Communicator& comm, std::size_t n, const SyncConfig& config)
    : plan_(comm, plan_config(n, config)) {
  // Its runs' name on a timeline (GRADWIRE_TIMELINE=trace.json; docs/timeline.md).
  plan_.set_label("gradients: layer 1 W .. last b, " + std::to_string(n) + " floats");
}

GradSync::GradSync(gradwire::Communicator& comm, const GradSync& from)
    : plan_(comm, from.plan_.config()) {
  plan_.carry_residual(from.plan_);
}

GradSync::GradSync(gradwire::Communicator& comm, std::size_t n, const SyncConfig& config,
                   const GradSync* from)
    : plan_(comm, plan_config(n, config)) {
  plan_.carry_residual(from ? &from->plan_ : nullptr);
}

void GradSync::average(float* g) {
  const auto t0 = std::chrono::steady_clock::now();
  plan_.run(g, g);
  seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace fm
