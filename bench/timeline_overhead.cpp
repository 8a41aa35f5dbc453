// What recording a timeline costs a 1 MB q8 plan run (docs/timeline.md; bench/results/
// timeline-overhead.md). In one job, rounds alternate between a communicator without a
// timeline and one with (each opens, records and writes its own file), the same SRA q8 plan
// of 2^18 float32 on each; the paired ratio of their median run times is the overhead.
// Beside it, the recorder's own cost per event (a tight loop of spans) times the events one
// run records, over the run time: the same figure without the machine's noise.
//
//   mpirun -np 4 gw_timeline_overhead [ROUNDS] [RUNS_PER_ROUND] [DIR]
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <gradwire/communicator.hpp>
#include <gradwire/plan.hpp>

#include "timeline.hpp"

#include "median.hpp"

namespace {

using gradwire::bench::median;

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Median time of one run over `runs` runs, every rank starting together.
double time_runs(gradwire::Communicator& comm, int runs, std::vector<float>& x, std::vector<float>& y) {
  gradwire::PlanConfig cfg;
  cfg.count = x.size();
  cfg.codec = "q8";
  cfg.algorithm = "sra";
  cfg.op = gradwire::ReduceOp::Avg;
  gradwire::Plan plan(comm, cfg);
  plan.set_label("overhead: q8@sra, 1 MB");
  for (int i = 0; i < 5; ++i) plan.run(x.data(), y.data());
  std::vector<double> t;
  for (int i = 0; i < runs; ++i) {
    MPI_Barrier(comm.mpi_comm());
    const double t0 = now_s();
    plan.run(x.data(), y.data());
    double dt = now_s() - t0;
    MPI_Allreduce(MPI_IN_PLACE, &dt, 1, MPI_DOUBLE, MPI_MAX, comm.mpi_comm());
    t.push_back(dt);
  }
  return median(t);
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 6;
  const int runs = argc > 2 ? std::atoi(argv[2]) : 100;
  const std::string dir = argc > 3 ? argv[3] : "/tmp";
  std::vector<float> x(std::size_t{1} << 18), y(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>((i * 2654435761u + static_cast<unsigned>(rank)) % 1000) / 500.0f - 1.0f;

  std::vector<double> off, on, ratio;
  std::size_t events_per_run = 0;
  gradwire::Communicator plain(MPI_COMM_WORLD);
  for (int r = 0; r < rounds; ++r) {
    // Alternate which comes first, so drift falls on both alike.
    double t_off = 0, t_on = 0;
    for (int k = 0; k < 2; ++k) {
      if ((k == 0) == (r % 2 == 0)) {
        t_off = time_runs(plain, runs, x, y);
      } else {
        gradwire::Options o;
        o.timeline = dir + "/timeline-overhead.json";
        gradwire::Communicator traced(MPI_COMM_WORLD, o);
        t_on = time_runs(traced, runs, x, y);
        if (r == 0 && rank == 0 && gradwire::timeline::active()) {
          // Events of one run: the ring's count over the runs made (5 warm-up + runs).
          const std::string j = gradwire::timeline::active()->events_json();
          std::size_t n = 0;
          for (std::size_t p = j.find("\"ph\":\""); p != std::string::npos; p = j.find("\"ph\":\"", p + 1))
            if (j.compare(p + 6, 1, "M") != 0 && j.compare(p + 6, 1, "e") != 0) ++n;
          events_per_run = n / static_cast<std::size_t>(runs + 5);
        }
      }
    }
    off.push_back(t_off);
    on.push_back(t_on);
    ratio.push_back(t_on / t_off);
  }

  // The recorder alone: spans into a ring, timed in a tight loop (a recorder of its own).
  double per_event_ns = 0;
  if (rank == 0) {
    gradwire::timeline::Recorder rec("/dev/null", 0, 1, std::size_t{1} << 16);
    gradwire::timeline::Event e;
    e.name = "encode";
    const int n = 2000000;
    const double t0 = now_s();
    for (int i = 0; i < n; ++i) {
      e.t0 = gradwire::timeline::now_ns();
      e.dur = gradwire::timeline::now_ns() - e.t0;
      rec.add(e);
    }
    per_event_ns = (now_s() - t0) / n * 1e9;
  }
  if (rank == 0) {
    const double m_off = median(off), m_on = median(on), m_ratio = median(ratio);
    std::printf("# gw_timeline_overhead: %d ranks, 1 MB q8 sra plan, %d rounds x %d runs\n", size, rounds, runs);
    std::printf("%-8s %14s %14s %10s\n", "round", "off (us)", "on (us)", "on/off");
    for (int r = 0; r < rounds; ++r)
      std::printf("%-8d %14.1f %14.1f %10.4f\n", r, off[r] * 1e6, on[r] * 1e6, ratio[r]);
    std::printf("median   %14.1f %14.1f %10.4f\n", m_off * 1e6, m_on * 1e6, m_ratio);
    std::printf("events per run (rank 0): %zu; recorder cost per event: %.1f ns; "
                "events x cost / run time: %.4f %%\n",
                events_per_run, per_event_ns,
                100.0 * static_cast<double>(events_per_run) * per_event_ns * 1e-9 / m_off);
  }
  MPI_Finalize();
  return 0;
}
