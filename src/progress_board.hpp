// A side channel for naming the culprit of a timeout without any MPI call: the ranks of a
// communicator that share a host each own a cache line in a POSIX shared-memory segment, where they
// count the collectives they have entered and publish their pid. A rank whose wait passed its
// deadline (or the watchdog thread, while the rank is stuck inside MPI) reads its neighbours'
// lines: a rank behind in the count has not reached the call; a pid that is gone has exited;
// a pid in state T is stopped. Ranks on other hosts are not seen (the message says so).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include <mpi.h>

namespace gradwire::detail {

class ProgressBoard {
 public:
  enum Counter { Dense = 0, PlanRun = 1 };

  // Collective over comm (made in the rendezvous). Never throws: without a board (no
  // shared memory) culprits() says nothing.
  void attach(MPI_Comm comm) noexcept;
  void release() noexcept;
  // This rank entered another call of this kind. Only this rank writes its line, so a load
  // and a store do, without a locked add's full barrier on the way into every collective.
  void enter(Counter c) noexcept {
    if (mine_) mine_[c].store(mine_[c].load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  // This rank's current call of this kind failed here (its peers' timeouts will say so).
  void failed(Counter c, bool non_finite) noexcept {
    if (!mine_) return;
    mine_[3].store(mine_[c].load(std::memory_order_relaxed), std::memory_order_relaxed);
    mine_[4].store(static_cast<std::uint64_t>(c + 1) | (non_finite ? 0x100u : 0u),
                   std::memory_order_relaxed);
  }
  // "; rank 2 is stopped (SIGSTOP?)" etc., or "" when nothing is known. Safe from any thread.
  std::string culprits(Counter c, int node_count) const;

 private:
  void* map_ = nullptr;  // POSIX shared memory: unmapping is local (no collective in a destructor)
  std::size_t bytes_ = 0;
  std::atomic<std::uint64_t>* mine_ = nullptr;
  std::vector<std::atomic<std::uint64_t>*> lines_;  // per host rank: [dense, plan, pid, failed at, failed kind]
  std::vector<int> ranks_;                          // their ranks in the communicator
  int me_ = 0;
};

}  // namespace gradwire::detail
