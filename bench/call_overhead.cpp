// What a call costs beside MPI_Allreduce itself at small sizes (bench/results/
// auto-never-loses.md, "where the last misses come from"). Each row is MPI_Allreduce with
// something around it, or a gradwire call; rows are timed in blocks that rotate every round
// (barrier before each call, as OSU times), and each row's figure is the ranks' mean of their
// median call, over the first row's. "again" (MPI_Allreduce timed again) is the method's own
// spread; the stores stand for what the watchdog's arm and the progress board write on every
// call, the two calls into libgradwire for a call into another library's code.
//
//   mpirun -np 3 gw_call_overhead [ROUNDS] [CALLS_PER_BLOCK] [MAX_BYTES]
#include <mpi.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <gradwire/communicator.hpp>
#include <gradwire/plan.hpp>

#include "median.hpp"

namespace {

using gradwire::bench::median;

// Six fields on one line, as the watchdog's arm writes them.
struct alignas(64) ArmLike {
  std::atomic<const char*> collective{""};
  std::atomic<std::size_t> count{0};
  std::atomic<int> dtype{0}, op{0}, peer{0};
  std::atomic<std::uint64_t> armed{0};
  std::uint64_t arms = 0;
};

// One word on a page of its own (a separate cache line and TLB entry each).
struct alignas(4096) PageWord {
  std::atomic<std::uint64_t> value{0};
};

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 30;
  const int calls = argc > 2 ? std::atoi(argv[2]) : 100;
  const std::size_t max_bytes = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 2048;
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  MPI_Comm base;  // the baseline's own duplicate, as gw_allreduce's
  MPI_Comm_dup(MPI_COMM_WORLD, &base);
  {
    gradwire::Communicator comm(MPI_COMM_WORLD);
    const MPI_Comm gradwire_comm = comm.mpi_comm();
    ArmLike arm;
    const auto pages = std::make_unique<PageWord[]>(5);
    if (rank == 0) {
      std::printf("# gw_call_overhead: %d ranks, %d rounds x %d calls per row; each row's median "
                  "call (mean over ranks) over MPI_Allreduce's\n",
                  ranks, rounds, calls);
    }
    for (std::size_t bytes = 8; bytes <= max_bytes; bytes *= 4) {
      const int n = static_cast<int>(bytes / sizeof(float));
      std::vector<float> send(static_cast<std::size_t>(n), 1.0f), recv(send.size());
      gradwire::PlanConfig cfg;
      cfg.count = send.size();
      cfg.codec = "q8";  // "auto" below 4 KiB per rank: the floor, dense without a trial
      gradwire::Plan plan(comm, cfg);
      auto mpi = [&](MPI_Comm c) {
        MPI_Allreduce(send.data(), recv.data(), n, MPI_FLOAT, MPI_SUM, c);
      };
      const std::vector<std::pair<std::string, std::function<void()>>> rows = {
          {"MPI_Allreduce", [&] { mpi(base); }},
          {"again", [&] { mpi(base); }},
          {"+6 stores, 1 line", [&] {
             arm.collective.store("allreduce", std::memory_order_relaxed);
             arm.count.store(send.size(), std::memory_order_relaxed);
             arm.dtype.store(1, std::memory_order_relaxed);
             arm.op.store(0, std::memory_order_relaxed);
             arm.peer.store(-1, std::memory_order_relaxed);
             arm.armed.store(++arm.arms, std::memory_order_release);
             mpi(base);
             arm.armed.store(0, std::memory_order_release);
           }},
          {"+5 pages", [&] {
             pages[0].value.store(pages[0].value.load(std::memory_order_relaxed) + 1,
                                  std::memory_order_relaxed);
             pages[1].value.store(arm.arms, std::memory_order_release);
             mpi(base);
             for (int i = 1; i < 5; ++i)
               pages[i].value.store(arm.arms + static_cast<unsigned>(i), std::memory_order_relaxed);
           }},
          {"+2 calls to .so", [&] {
             static_cast<void>(plan.stats());  // out of line: the call stays
             mpi(base);
             static_cast<void>(plan.stats());
           }},
          {"gradwire's comm", [&] { mpi(gradwire_comm); }},
          {"auto plan", [&] { plan.run(send.data(), recv.data()); }},
          {"gradwire allreduce", [&] {
             comm.allreduce(send.data(), recv.data(), send.size(), gradwire::DType::Float32,
                            gradwire::ReduceOp::Sum);
           }},
      };
      const std::size_t nrows = rows.size();
      for (int i = 0; i < calls; ++i)
        for (const auto& row : rows) row.second();  // warm every path
      std::vector<std::vector<double>> times(nrows);
      for (int r = 0; r < rounds; ++r) {
        for (std::size_t j = 0; j < nrows; ++j) {
          const std::size_t k = (j + static_cast<std::size_t>(r)) % nrows;
          for (int i = 0; i < calls; ++i) {
            MPI_Barrier(base);
            const double t0 = MPI_Wtime();
            rows[k].second();
            times[k].push_back(MPI_Wtime() - t0);
          }
        }
      }
      std::vector<double> med(nrows);
      for (std::size_t j = 0; j < nrows; ++j) med[j] = median(times[j]) / ranks;
      MPI_Allreduce(MPI_IN_PLACE, med.data(), static_cast<int>(nrows), MPI_DOUBLE, MPI_SUM, base);
      if (rank == 0) {
        if (bytes == 8) {
          std::printf("%8s %9s", "bytes", "MPI (us)");
          for (std::size_t j = 1; j < nrows; ++j) std::printf(" %20s", rows[j].first.c_str());
          std::printf("\n");
        }
        std::printf("%8zu %9.3f", bytes, med[0] * 1e6);
        for (std::size_t j = 1; j < nrows; ++j) std::printf(" %19.3fx", med[0] / med[j]);
        std::printf("\n");
      }
    }
  }
  MPI_Comm_free(&base);
  MPI_Finalize();
  return 0;
}
