#include "grad_sync.hpp"

#include <chrono>
#include <stdexcept>

#if FM_HAVE_PLAN
#include <gradwire/plan.hpp>
#endif

namespace fm {

#if FM_HAVE_PLAN
struct GradSync::PlanHolder {
  gradwire::Plan plan;
};
#else
struct GradSync::PlanHolder {};
#endif

GradSync::GradSync(gradwire::Communicator& comm, std::size_t n, const SyncConfig& config)
    : comm_(comm), n_(n) {
#if FM_HAVE_PLAN
  gradwire::PlanConfig pc;
  pc.count = n;
  pc.dtype = gradwire::DType::Float32;
  pc.op = gradwire::ReduceOp::Avg;
  pc.codec = config.codec;
  pc.algorithm = config.algo;
  pc.error_feedback = config.error_feedback;
  pc.seed = config.seed;
  pc.memory = gradwire::Memory::Host;
  plan_ = std::make_unique<PlanHolder>(PlanHolder{gradwire::Plan(comm, pc)});
  algorithm_ = "plan";
#else
  if (config.codec != "none" || (config.algo != "auto" && config.algo != "dense")) {
    throw std::invalid_argument(
        "--codec " + config.codec + " --algo " + config.algo +
        ": this gradwire has no gradwire::Plan (include/gradwire/plan.hpp without its "
        "implementation); only --codec none --algo auto|dense runs");
  }
  algorithm_ = "engine-allreduce";
#endif
}

GradSync::~GradSync() = default;

void GradSync::average(float* g) {
  const auto t0 = std::chrono::steady_clock::now();
  if (plan_) {
#if FM_HAVE_PLAN
    plan_->plan.run(g, g);
    const gradwire::PlanStats& s = plan_->plan.stats();
    wire_bytes_ = s.wire_bytes;
    algorithm_ = s.algorithm;
#endif
  } else {
    comm_.allreduce(g, g, n_, gradwire::DType::Float32, gradwire::ReduceOp::Avg,
                    gradwire::Memory::Host);
    // What each rank sends in a bandwidth-optimal (ring) allreduce: the convention of
    // bench/osu's gw_allreduce for the engine's dense path.
    const int p = comm_.size();
    wire_bytes_ = static_cast<std::size_t>(2.0 * (p - 1) / p * static_cast<double>(n_ * 4));
  }
  seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace fm
