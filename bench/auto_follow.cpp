// "auto" under a link that changes while the plan runs (bench/link/auto_follow.sh,
// bench/results/auto-never-loses.md): one "auto" plan run back to back for --seconds; rank 0
// prints one line per run: the wall clock (seconds since the epoch, to set beside the times
// the link was shaped), the step, the algorithm that ran, the run's time (the slowest rank's,
// around run(), an agreement included), the switches so far, and the plan's decision whenever
// it changes.
//
//   mpirun -np 4 gw_auto_follow [-n ELEMENTS] [--codec q8] [--seconds 90]
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <gradwire/communicator.hpp>
#include <gradwire/plan.hpp>

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  std::size_t n = std::size_t{1} << 20;
  std::string codec = "q8";
  double seconds = 90;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "-n")) n = std::strtoull(argv[i + 1], nullptr, 10);
    else if (!std::strcmp(argv[i], "--codec")) codec = argv[i + 1];
    else if (!std::strcmp(argv[i], "--seconds")) seconds = std::strtod(argv[i + 1], nullptr);
  }

  {
    gradwire::Communicator comm(MPI_COMM_WORLD);
    gradwire::PlanConfig cfg;
    cfg.count = n;
    cfg.codec = codec;
    gradwire::Plan plan(comm, cfg);
    const bool root = comm.rank() == 0;
    if (root) {
      std::printf("# gw_auto_follow: %d ranks, %zu float32 (%.1f MB), codec %s; created: %s\n",
                  comm.size(), n, static_cast<double>(n) * 4 / 1e6, codec.c_str(),
                  plan.stats().decision.c_str());
      std::printf("# %-17s %6s %-17s %12s %8s  decision (when it changes)\n", "epoch_s", "step",
                  "algorithm", "run_ms(max)", "switches");
    }
    std::vector<float> x(n), out(n);
    for (std::size_t i = 0; i < n; ++i)
      x[i] = static_cast<float>((i * 2654435761u + static_cast<std::size_t>(comm.rank())) % 2001) /
                 1000.0f -
             1.0f;
    const double t0 = MPI_Wtime();
    std::string last;
    for (std::uint64_t step = 0;; ++step) {
      // Timed here: an auto plan running dense times only the runs its decisions need.
      const double r0 = MPI_Wtime();
      plan.run(x.data(), out.data());
      const double run_s = MPI_Wtime() - r0;
      const gradwire::PlanStats& s = plan.stats();
      // The slowest rank's run, and one clock for all ranks to stop by.
      double v[2] = {run_s, MPI_Wtime() - t0};
      MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
      if (root) {
        const double epoch = std::chrono::duration<double>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                 .count();
        std::printf("%-19.3f %6llu %-17s %12.2f %8d  %s\n", epoch,
                    static_cast<unsigned long long>(step), s.algorithm.c_str(), v[0] * 1e3,
                    s.switches, s.decision == last ? "" : s.decision.c_str());
        std::fflush(stdout);
        last = s.decision;
      }
      if (v[1] > seconds) break;
    }
  }
  MPI_Finalize();
  return 0;
}
