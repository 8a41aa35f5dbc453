// "auto" re-decided from the plan's own runs (docs/compressed-collectives.md, "How auto
// decides"). The trial at creation predicts both candidates once; on a shared machine, or a
// link whose load changes, that prediction goes stale. The plan records each run's time; at
// agreed steps the ranks agree on the figures (one small allreduce, spaced so that it costs
// about 1 % of the run time, counting what it adds to the next run) and this state machine,
// a pure function of the agreed figures, says whether to switch. Every rank feeds it the same
// agreed figures at the same steps, so every rank always runs the same algorithm. No MPI
// here: tests drive it with synthetic times.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace gradwire::coll {

enum class AutoPick : int { Dense = 0, Compressed = 1 };

struct AutoSwitchTuning {
  int window = 8;          // a rank's figure: the median of its last `window` runs (not
                           // counting the one right after an agreement)
  int first_check = 3;     // the first agreement after this many runs
  int probation = 3;       // runs of a newly chosen algorithm judged, after its first
  int max_interval = 256;  // the most runs between two agreements
  double budget = 0.01;    // agreements cost at most this fraction of the run time (their own
                           // time and what they add to the run after them); until that cost
                           // is known (the second agreement), one is assumed to cost a run
  int min_age = 256;       // the fewest runs before a figure of the other expires (below)
  double margin = 0.15;    // hysteresis: switch when the other is faster by this fraction
  double stale = 2.0;      // the running algorithm's time moved by this factor since the
                           // other was last timed: the other's figure is stale, time it again
  // The other's figure also expires with age, whether measured, estimated or the trial's
  // prediction: after enough runs that timing it again costs `budget` of the time run since
  // (probation x (other / running - 1) / budget runs, at least min_age; doubled each time the
  // re-timed one loses again). A figure taken in a transient, before the link changed back by
  // less than `stale`, or a trial's near miss, is otherwise trusted for ever.
};

class AutoSwitch {
 public:
  // predicted_*: the trial's figures at the plan's size; `initial` the trial's choice.
  // `compressed`: the compressed candidate's name (for reason()).
  AutoSwitch(AutoPick initial, double predicted_dense_s, double predicted_compressed_s,
             const std::string& compressed, AutoSwitchTuning tuning = {});

  AutoPick current() const { return cur_; }
  // Whether the next decision needs the time of the run about to start at `step`: one of the
  // last `window` runs before an agreement, or the run right after one. A plan may leave the
  // others untimed (plan.cpp, engine_untimed).
  bool times(std::uint64_t step) const {
    return after_check_ || step + static_cast<std::uint64_t>(t_.window) >= next_check_;
  }
  // This rank's time of a finished run of current() (blocking runs; see plan.cpp).
  void record(double run_s);
  // Whether the run about to start at `step` (the plan's run count, equal on every rank) is
  // preceded by an agreement.
  bool check_due(std::uint64_t step) const { return step >= next_check_; }
  // This rank's figures for the agreement, of `ranks` ranks: {this rank's share of the mean
  // over ranks of current()'s recent runs (its median / ranks; 0: none), minus this rank's
  // time of the previous agreement, what agreements add to the run after them (+infinity: not
  // known yet)}. Agreed by combine(): the mean run figure, the cheapest rank's agreement (its
  // real cost: the others' times include waiting for the last rank to arrive), the largest
  // slowdown after one. Takes the previous agreement's slowdown sample first, now that runs
  // have followed it.
  static constexpr int kFigures = 3;
  void local(double out[kFigures], int ranks);
  // How the agreement combines two ranks' figures (commutative, associative): the sum of the
  // first, the maximum of the others. The mean rank's run, not the slowest's: a rank's run
  // time includes its wait for the others to arrive, and the slowest rank's charged dense with
  // that skew (2 ranks, q8, 8 KB: dense agreed at 6.8 us, sra 6.1, MPI_Allreduce 5.4 in the
  // same benchmark row); the fastest rank's understated sparse-allgather, whose ranks do not
  // finish together (bench/results/auto-never-loses.md).
  static void combine(const double in[kFigures], double inout[kFigures]);
  // The agreed figures decide; `step` as for check_due. Returns true when current() changed.
  bool decide(const double agreed[kFigures], std::uint64_t step);
  // This rank's time inside the agreement just made. What an agreement adds to the run after
  // it is learnt from that run's time against the runs that follow it (a change of the link
  // or the load at the agreement moves both alike), so the spacing budgets the whole cost.
  void set_check_cost(double s);

  double predicted_s(AutoPick a) const { return predicted_[idx(a)]; }
  double measured_s(AutoPick a) const { return measured_[idx(a)]; }  // 0: never ran
  int switches() const { return switches_; }
  const std::string& reason() const { return reason_; }

 private:
  static int idx(AutoPick a) { return static_cast<int>(a); }
  static AutoPick other(AutoPick a) {
    return a == AutoPick::Dense ? AutoPick::Compressed : AutoPick::Dense;
  }
  void switch_to(AutoPick a, std::uint64_t step, const std::string& why);
  // The median of this rank's last `last` runs of current() (at most the window); 0: none.
  double recent_median(std::size_t last = SIZE_MAX) const;

  AutoSwitchTuning t_;
  AutoPick cur_;
  double predicted_[2];
  double measured_[2] = {0, 0};
  std::uint64_t measured_at_[2] = {0, 0};  // the step of each one's latest figure
  double anchor_;              // current()'s time when the other's figure was last fresh
  bool judged_trial_ = false;     // the first agreed figure has been compared with the trial
  double estimate_ = 0;           // the other's prediction scaled by the trial's miss (0: none)
  std::uint64_t estimate_at_ = 0;
  bool probation_ = false;     // current() was just chosen over the other: judge it next
  bool aging_ = false;         // ... because the other's figure had expired (not a doubt)
  int settled_ = 0;            // expired figures re-timed in a row that lost again
  int doubt_ = 0;              // switches reverted in a row: later probes need a wider margin
  std::uint64_t next_check_;
  double check_local_s_ = 0;   // this rank's last agreement
  // What an agreement adds to the run after it, beyond its own time: the lower median of the
  // last few agreements' samples (that run's time less the median of the runs after it; a
  // change of the link between the two makes one wild sample, which the median ignores). On
  // 4 ranks sharing 2 cores, spacing 4 MB runs by the agreement's own time alone cost 5 %
  // instead of 1 %, and assuming no slowdown until one was sampled put three agreements in
  // the first ten runs (docs/compressed-collectives.md).
  static constexpr std::size_t kExcessSamples = 5;
  std::vector<double> excess_samples_;  // oldest first
  bool after_check_ = false;      // the next recorded run follows an agreement
  bool have_after_run_ = false;   // after_check_run_ holds that run's time
  double after_check_run_ = 0;
  int runs_since_check_ = 0;      // recorded after it
  std::vector<double> recent_;  // this rank's runs of current(), oldest first, <= window
  int switches_ = 0;
  std::string reason_;
  std::string names_[2];
};

// What a plan records for a run of `ran` that took measured_s on this rank: measured_s, unless
// a test replaced it (set_run_time_for_tests) to act out a rank that measures otherwise.
double recorded_run_time(AutoPick ran, double measured_s);
void set_run_time_for_tests(std::function<double(AutoPick ran, double measured_s)> f);

}  // namespace gradwire::coll
