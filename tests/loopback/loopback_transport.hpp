// A transport that runs N ranks in one process (the algorithms' fast test tier, beside the
// mpirun suite; DESIGN.md, "Layers"). A Fabric is one communicator: every rank's endpoint
// (LoopbackTransport) posts into it from its own thread. Sends are eager (the payload is
// copied when posted, so a send completes at once); receives match by (source, tag) in
// posting order, as MPI does; collectives meet by their sequence number on the fabric and
// reduce in rank order. Everything is under one mutex: correctness, not speed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <vector>

#include "transport/transport.hpp"

namespace gwloop {

class Fabric {
 public:
  explicit Fabric(int size) : size_(size), next_coll_(static_cast<std::size_t>(size), 0) {}
  int size() const noexcept { return size_; }

 private:
  friend class LoopbackTransport;
  struct Coll {
    std::vector<std::vector<std::byte>> in;  // each rank's contribution (copied when posted)
    int arrived = 0;
  };
  int size_;
  std::mutex m_;
  std::map<std::tuple<int, int, int>, std::deque<std::vector<std::byte>>> mail_;  // src,dst,tag
  std::map<std::uint64_t, Coll> colls_;
  std::vector<std::uint64_t> next_coll_;  // per rank: its next collective's sequence number
};

class LoopbackTransport final : public gradwire::coll::Transport {
 public:
  LoopbackTransport(Fabric& f, int rank) : f_(f), rank_(rank) {}
  int rank() const noexcept override { return rank_; }
  int size() const noexcept override { return f_.size(); }
  int isend(const void* buf, std::size_t bytes, int peer, int tag) override;
  int irecv(void* buf, std::size_t bytes, int peer, int tag) override;
  int iallreduce(void* buf, std::size_t count, gradwire::coll::Elem t,
                 gradwire::coll::Reduce op) override;
  int iallgather(const void* send, void* recv, std::size_t bytes) override;
  int iallgatherv(const void* send, std::size_t bytes, void* recv, const int* counts,
                  const int* displs) override;
  int ireduce(const void* send, void* recv, std::size_t count, gradwire::coll::Elem t,
              int root) override;
  int ibcast(void* buf, std::size_t bytes, int root) override;
  int test_some(int* done) override;
  void reset() override;

 private:
  enum class Kind { Send, Recv, Allreduce, Allgather, Allgatherv, Reduce, Bcast };
  struct Op {
    Kind kind;
    void* buf = nullptr;         // where the result goes
    std::size_t bytes = 0;       // recv: capacity; collectives: the result's bytes
    int peer = 0, tag = 0;       // recv: source, tag; reduce/bcast: root
    std::size_t count = 0;
    gradwire::coll::Elem elem{};
    gradwire::coll::Reduce red{};
    const int* counts = nullptr;  // allgatherv
    const int* displs = nullptr;
    std::uint64_t seq = 0;       // collectives
    bool done = false, reported = false;
  };
  int post_collective(Op op, const void* contribution, std::size_t bytes);
  bool try_complete(Op& op);  // under the fabric's mutex

  Fabric& f_;
  int rank_;
  std::vector<Op> ops_;
};

}  // namespace gwloop
