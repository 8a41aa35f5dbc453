#include "collectives/auto_switch.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <utility>

namespace gradwire::coll {
namespace {

std::string ms(double s) {
  char b[32];
  std::snprintf(b, sizeof b, "%.3g ms", s * 1e3);
  return b;
}

// The k-th smallest of the last n values (a copy: the window keeps its order of arrival).
double nth_of_last(const std::vector<double>& values, std::size_t n, std::size_t k) {
  std::vector<double> v(values.end() - static_cast<std::ptrdiff_t>(n), values.end());
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

std::function<double(AutoPick, double)>& run_time_override() {
  static std::function<double(AutoPick, double)> f;
  return f;
}

}  // namespace

double recorded_run_time(AutoPick ran, double measured_s) {
  const auto& f = run_time_override();
  return f ? f(ran, measured_s) : measured_s;
}

void set_run_time_for_tests(std::function<double(AutoPick, double)> f) {
  run_time_override() = std::move(f);
}

AutoSwitch::AutoSwitch(AutoPick initial, double predicted_dense_s, double predicted_compressed_s,
                       const std::string& compressed, AutoSwitchTuning tuning)
    : t_(tuning),
      cur_(initial),
      predicted_{predicted_dense_s, predicted_compressed_s},
      anchor_(predicted_[idx(initial)]),
      next_check_(static_cast<std::uint64_t>(std::max(1, tuning.first_check))),
      names_{"dense", compressed} {
  recent_.reserve(static_cast<std::size_t>(std::max(1, t_.window)));
  reason_ = "trial: " + names_[idx(cur_)] + " predicted " + ms(predicted_[idx(cur_)]) +
            ", " + names_[idx(other(cur_))] + " " + ms(predicted_[idx(other(cur_))]);
}

double AutoSwitch::recent_median(std::size_t last) const {
  const std::size_t n = std::min(recent_.size(), last);
  return n == 0 ? 0 : nth_of_last(recent_, n, n / 2);
}

void AutoSwitch::record(double run_s) {
  if (after_check_) {
    // The run right after an agreement carries the agreement's slowdown (sampled for the
    // spacing, which budgets it) and, after a switch, the first run of the other algorithm:
    // not a figure of either. Counted in, a 3-run probe's median was the larger of its two
    // other runs, a figure biased against the probe.
    after_check_run_ = run_s;
    have_after_run_ = true;
    runs_since_check_ = 0;
    after_check_ = false;
    return;
  }
  ++runs_since_check_;
  if (recent_.size() >= static_cast<std::size_t>(std::max(1, t_.window)))
    recent_.erase(recent_.begin());
  recent_.push_back(run_s);
}

void AutoSwitch::set_check_cost(double s) {
  check_local_s_ = s;
  after_check_ = true;
}

void AutoSwitch::combine(const double in[kFigures], double inout[kFigures]) {
  inout[0] += in[0];
  for (int i = 1; i < kFigures; ++i) inout[i] = std::max(inout[i], in[i]);
}

void AutoSwitch::local(double out[kFigures], int ranks) {
  if (have_after_run_ && runs_since_check_ > 0) {
    if (excess_samples_.size() >= kExcessSamples) excess_samples_.erase(excess_samples_.begin());
    excess_samples_.push_back(after_check_run_ -
                              recent_median(static_cast<std::size_t>(runs_since_check_)));
  }
  have_after_run_ = false;
  out[0] = recent_median() / std::max(1, ranks);
  // Negated: the agreement's maximum is then the cheapest rank's cost. A rank that arrives
  // early waits for the others inside the allreduce; the last to arrive waits for nobody, so
  // its time is what the agreement itself costs.
  out[1] = -check_local_s_;
  // The run after an agreement starts with every rank in step: its excess is not skewed by
  // late arrivals, and the job moves at its slowest rank's pace. The lower median: one wild
  // sample among two does not stretch the spacing.
  const std::size_t n = excess_samples_.size();
  out[2] = n == 0 ? HUGE_VAL : nth_of_last(excess_samples_, n, (n - 1) / 2);
}

void AutoSwitch::switch_to(AutoPick a, std::uint64_t step, const std::string& why) {
  cur_ = a;
  ++switches_;
  recent_.clear();  // the window holds runs of the running algorithm only
  have_after_run_ = false;
  reason_ = why;
  // Judged after `probation` runs beyond the one right after this agreement (record()).
  next_check_ = step + 1 + static_cast<std::uint64_t>(std::max(1, t_.probation));
}

bool AutoSwitch::decide(const double agreed[kFigures], std::uint64_t step) {
  const double m = agreed[0];
  // An agreement's whole cost: its own time and the slowdown of the run after it; while the
  // slowdown is not known, a run's time (assumed free, agreements came after 3, 5 and 7 runs,
  // and 20-run rows of 1-16 MB on 4 ranks sharing 2 cores lost 3 % to them).
  const double check = std::isfinite(agreed[2]) ? -agreed[1] + std::max(0.0, agreed[2]) : m;
  const AutoPick o = other(cur_);
  const std::string& cn = names_[idx(cur_)];
  const std::string& on = names_[idx(o)];
  if (!(m > 0)) {  // no rank timed a run since the last agreement (non-blocking runs only)
    next_check_ = step + static_cast<std::uint64_t>(std::max(1, t_.max_interval));
    return false;
  }
  measured_[idx(cur_)] = m;
  measured_at_[idx(cur_)] = step;
  const bool first = !judged_trial_;  // the running one's first figure: judge the trial
  judged_trial_ = true;
  // The next agreement: spaced so that its cost stays within the budget of the runs.
  const double runs = check > 0 ? std::ceil(check / (t_.budget * m)) : 2.0;
  next_check_ =
      step + static_cast<std::uint64_t>(std::clamp(runs, 2.0, double(std::max(2, t_.max_interval))));
  const bool timed = measured_[idx(o)] > 0;
  const double other_s = timed           ? measured_[idx(o)]
                         : estimate_ > 0 ? estimate_
                                         : predicted_[idx(o)];
  if (probation_) {
    // Both figures are fresh: the other one ran just before the switch.
    probation_ = false;
    const bool aged = aging_;
    aging_ = false;
    if (m > other_s) {
      // An expired figure re-timed is upkeep, not a doubtful probe: it spaces the next one.
      if (aged) {
        ++settled_;
      } else {
        ++doubt_;
      }
      switch_to(o, step, "back to " + on + ": " + cn + " measured " + ms(m) + " against " + on +
                             "'s " + ms(other_s));
      anchor_ = other_s;
      next_check_ = step + static_cast<std::uint64_t>(std::max(2, t_.window));
      return true;
    }
    doubt_ = settled_ = 0;
    anchor_ = m;
    reason_ = "measured: " + cn + " " + ms(m) + ", " + on + " " + ms(other_s);
    return false;
  }
  if (cur_ == AutoPick::Compressed && !timed && m * t_.stale > other_s) {
    // The trial chose compression by less than `stale`: a lossy result must also be faster,
    // so dense is timed once as the plan runs it before the choice stands.
    switch_to(o, step, "verifying: " + cn + " measured " + ms(m) + ", " + on + " predicted " +
                           ms(other_s) + "; timing " + on + "'s own runs");
    probation_ = true;
    return true;
  }
  const bool moved = m > anchor_ * t_.stale || m * t_.stale < anchor_;
  if (moved && first && !timed) {
    // The first figures missed the trial's prediction by `stale` or more. That is the trial's
    // miss, not a change of the link or the load, and the trial predicted the other the same
    // way: at 32-128 MB (q8, 2 and 4 ranks) dense ran 2.0-2.5x over its prediction and sra
    // 1.75-2.2x over its own, so re-timing sra on the move alone lost every time
    // (bench/results/auto-never-loses.md). The other's prediction is scaled by the same miss;
    // that estimate expires as a measured figure does (below).
    estimate_ = other_s * m / anchor_;
    estimate_at_ = step;
    anchor_ = m;
    reason_ = "trial: " + cn + " measured " + ms(m) + ", " + on + " estimated " +
              ms(estimate_) + " (its prediction x the same miss)";
    return false;
  }
  if (moved) {
    // The link or the load changed: what is known of the other is from before.
    switch_to(o, step, "re-timing " + on + ": " + cn + " moved from " + ms(anchor_) + " to " +
                           ms(m));
    probation_ = true;
    return true;
  }
  // Only a figure the other earned by running is compared with a margin. A prediction is
  // not: the trial that made it also made the running one's, and missed that by the same
  // factor. Taken at face value, a dense run 1.6x slower than its prediction "beat" sra's
  // equally optimistic one and probed sra at 16-128 MB (4 ranks, q8), where it lost 10-36 %
  // (bench/results/auto-never-loses.md). A miss by `stale` or more re-times the other (above).
  const double margin = t_.margin * static_cast<double>(1 << std::min(doubt_, 4));
  if (timed && m > (1 + margin) * other_s) {
    switch_to(o, step, cn + " measured " + ms(m) + " against " + on + "'s " + ms(other_s));
    probation_ = true;
    return true;
  }
  // The other's figure (measured, estimated from the trial's miss, or the trial's prediction)
  // expires once re-timing it would cost `budget` of the runs since: a figure far worse than
  // the running one's is re-timed rarely, a near one more often. At 64 KB over an emulated
  // link, one 8-run burst of sra (5.7 ms against its 0.8) sent the plan to dense (2.9 ms),
  // where it stayed while the link lasted; at 4-32 KB on 3-4 ranks a trial that put sra just
  // behind dense kept dense for all 1000 runs of a row, where other runs of the same sweep
  // found sra 1.3-1.5x faster than MPI_Allreduce (bench/results/auto-never-loses.md).
  const double expires_after = std::max(double(t_.min_age),
                                        t_.probation * std::max(0.0, other_s / m - 1) / t_.budget) *
                               static_cast<double>(1 << std::min(settled_, 6));
  const std::uint64_t age = step - (timed ? measured_at_[idx(o)] : estimate_at_);
  if (double(age) >= expires_after) {
    const char* kind = timed ? "" : estimate_ > 0 ? "estimated " : "predicted ";
    switch_to(o, step, "re-timing " + on + ": its " + kind + ms(other_s) + " is " +
                           std::to_string(age) + " runs old");
    probation_ = aging_ = true;
    return true;
  }
  return false;
}

}  // namespace gradwire::coll
