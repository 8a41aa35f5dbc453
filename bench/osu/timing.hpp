// How the benchmarks time a collective: OSU's way (a barrier before each call, each call
// timed alone) or nccl-tests' (one pipelined burst), averaged over ranks.
#pragma once

#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "buffers.hpp"

namespace gwbench {

struct Timing {
  double avg_us = 0, min_us = 0, max_us = 0;  // per call: mean over ranks, min and max rank
  int iterations = 0;
  // Each call's time, mean over ranks (the spread behind avg_us): blocking mode times each call
  // alone; burst mode takes the gap between consecutive completions on each rank.
  std::vector<double> times_us;
};

// The spread of per-call times, by nccl-tests' definitions (its -J per-iteration record):
// p50 = sorted[n/2], pK = sorted[min(n-1, ceil(n*K/100)-1)] (nearest rank), stdev over the
// population, cv = stdev/mean in percent.
struct Spread {
  double p50_us = NAN, p95_us = NAN, p99_us = NAN, stdev_us = NAN, cv_pct = NAN;
};

inline Spread spread(std::vector<double> t, double scale = 1) {
  Spread s;
  const std::size_t n = t.size();
  if (n == 0) return s;
  for (double& x : t) x /= scale;
  std::sort(t.begin(), t.end());
  auto pct = [&](std::size_t k) { return t[std::min(n - 1, (n * k + 99) / 100 - 1)]; };
  s.p50_us = t[n / 2];
  s.p95_us = pct(95);
  s.p99_us = pct(99);
  double sum = 0, var = 0;
  for (double x : t) sum += x;
  const double mean = sum / static_cast<double>(n);
  for (double x : t) var += (x - mean) * (x - mean);
  s.stdev_us = std::sqrt(var / static_cast<double>(n));
  s.cv_pct = mean > 0 ? s.stdev_us / mean * 100 : 0;
  return s;
}

// Watchdog::current, when set, is told of progress between calls (outside the timed span in
// blocking mode), so a call that hangs ends the job after --timeout. `after` runs after each
// call, outside its timed span in blocking mode (a plan's stats are read there: at 8 B a call
// into the library and a few adds are a visible part of the call's time); burst mode times
// the gaps between completions, so there it is inside.
struct NoAfter {
  void operator()() const {}
};
template <class Call, class After = NoAfter>
Timing time_calls(MPI_Comm comm, bool blocking, int warmup, int iterations, Call&& call,
                  After&& after = {}) {
  Watchdog* wd = Watchdog::current;
  auto beat = [wd] {
    if (wd) wd->beat();
  };
  for (int i = 0; i < warmup; ++i) {
    beat();
    call();
    after();
  }
  double total = 0;
  std::vector<double> each(static_cast<std::size_t>(std::max(iterations, 0)));
  beat();
  MPI_Barrier(comm);
  if (blocking) {
    for (int i = 0; i < iterations; ++i) {
      beat();
      MPI_Barrier(comm);
      const double t0 = MPI_Wtime();
      call();
      each[static_cast<std::size_t>(i)] = MPI_Wtime() - t0;
      total += each[static_cast<std::size_t>(i)];
      after();
    }
  } else {
    const double t0 = MPI_Wtime();
    double last = t0;
    for (int i = 0; i < iterations; ++i) {
      beat();
      call();
      after();
      const double now = MPI_Wtime();
      each[static_cast<std::size_t>(i)] = now - last;
      last = now;
    }
    total = last - t0;
  }
  beat();
  const double mine = iterations ? total / iterations * 1e6 : 0;
  int size = 1;
  MPI_Comm_size(comm, &size);
  Timing t;
  t.iterations = iterations;
  // Outside the timed span: one reduction of the per-call times.
  if (iterations > 0) {
    MPI_Allreduce(MPI_IN_PLACE, each.data(), iterations, MPI_DOUBLE, MPI_SUM, comm);
    for (double& x : each) x = x / size * 1e6;
  }
  t.times_us = std::move(each);
  MPI_Allreduce(&mine, &t.avg_us, 1, MPI_DOUBLE, MPI_SUM, comm);
  MPI_Allreduce(&mine, &t.min_us, 1, MPI_DOUBLE, MPI_MIN, comm);
  MPI_Allreduce(&mine, &t.max_us, 1, MPI_DOUBLE, MPI_MAX, comm);
  t.avg_us /= size;
  return t;
}

// Parts of one measurement, taken in turn with the baseline's so that drift in the machine's
// state (frequency, other load) falls on both alike.
inline Timing merge(const Timing& a, const Timing& b) {
  if (a.iterations == 0) return b;
  if (b.iterations == 0) return a;
  Timing t;
  t.iterations = a.iterations + b.iterations;
  t.avg_us = (a.avg_us * a.iterations + b.avg_us * b.iterations) / t.iterations;
  t.min_us = std::min(a.min_us, b.min_us);
  t.max_us = std::max(a.max_us, b.max_us);
  t.times_us = a.times_us;
  t.times_us.insert(t.times_us.end(), b.times_us.begin(), b.times_us.end());
  return t;
}

// OSU's defaults: more iterations for small messages.
inline int default_iterations(std::size_t bytes) { return bytes <= 8192 ? 1000 : 100; }
inline int default_warmup(std::size_t bytes) { return bytes <= 8192 ? 100 : 10; }

}  // namespace gwbench
