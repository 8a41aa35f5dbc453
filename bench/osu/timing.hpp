// How the benchmarks time a collective: OSU's way (a barrier before each call, each call
// timed alone) or nccl-tests' (one pipelined burst), averaged over ranks.
#pragma once

#include <mpi.h>

#include <algorithm>

#include "buffers.hpp"

namespace gwbench {

struct Timing {
  double avg_us = 0, min_us = 0, max_us = 0;  // per call: mean over ranks, min and max rank
  int iterations = 0;
};

// Watchdog::current, when set, is told of progress between calls (outside the timed span in
// blocking mode), so a call that hangs ends the job after --timeout.
template <class Call>
Timing time_calls(MPI_Comm comm, bool blocking, int warmup, int iterations, Call&& call) {
  Watchdog* wd = Watchdog::current;
  auto beat = [wd] {
    if (wd) wd->beat();
  };
  for (int i = 0; i < warmup; ++i) {
    beat();
    call();
  }
  double total = 0;
  beat();
  MPI_Barrier(comm);
  if (blocking) {
    for (int i = 0; i < iterations; ++i) {
      beat();
      MPI_Barrier(comm);
      const double t0 = MPI_Wtime();
      call();
      total += MPI_Wtime() - t0;
    }
  } else {
    const double t0 = MPI_Wtime();
    for (int i = 0; i < iterations; ++i) {
      beat();
      call();
    }
    total = MPI_Wtime() - t0;
  }
  beat();
  const double mine = iterations ? total / iterations * 1e6 : 0;
  int size = 1;
  MPI_Comm_size(comm, &size);
  Timing t;
  t.iterations = iterations;
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
  return t;
}

// OSU's defaults: more iterations for small messages.
inline int default_iterations(std::size_t bytes) { return bytes <= 8192 ? 1000 : 100; }
inline int default_warmup(std::size_t bytes) { return bytes <= 8192 ? 100 : 10; }

}  // namespace gwbench
