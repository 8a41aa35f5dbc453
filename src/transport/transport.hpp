// The transport that the compressed algorithms talk to (DESIGN.md: algorithms never call MPI or
// NCCL directly). Everything is non-blocking: a post returns the index of the operation among
// those posted since the last reset(), and test_some() reports completions in arrival order, so
// an algorithm can decode a chunk the moment it lands. Blocking is the plan's polling loop,
// which owns the deadline.
//
// Implementations: MpiTransport (mpi_p2p.hpp, host buffers) and NcclTransport
// (nccl_p2p.hpp, device buffers on the plan's stream; NCCL builds only).
#pragma once

#include <cstddef>
#include <cstdint>

namespace gradwire::coll {

// Element types the transport reduces. Byte is for data movement only.
enum class Elem : int { F32, F16, BF16, U64, Byte };
enum class Reduce : int { Sum, Max };

constexpr std::size_t elem_size(Elem t) noexcept {
  switch (t) {
    case Elem::F32: return 4;
    case Elem::F16:
    case Elem::BF16: return 2;
    case Elem::U64: return 8;
    case Elem::Byte: return 1;
  }
  return 1;
}

class Transport {
 public:
  virtual ~Transport() = default;
  virtual int rank() const noexcept = 0;
  virtual int size() const noexcept = 0;

  virtual int isend(const void* buf, std::size_t bytes, int peer, int tag) = 0;
  virtual int irecv(void* buf, std::size_t bytes, int peer, int tag) = 0;
  // In place on buf (count elements).
  virtual int iallreduce(void* buf, std::size_t count, Elem t, Reduce op) = 0;
  // recv holds size() blocks of `bytes`, rank r's at r * bytes.
  virtual int iallgather(const void* send, void* recv, std::size_t bytes) = 0;
  // Rank r's `counts[r]` bytes land at recv + displs[r].
  virtual int iallgatherv(const void* send, std::size_t bytes, void* recv, const int* counts,
                          const int* displs) = 0;
  // Sum of every rank's send into recv on root (recv unused elsewhere).
  virtual int ireduce(const void* send, void* recv, std::size_t count, Elem t, int root) = 0;
  virtual int ibcast(void* buf, std::size_t bytes, int root) = 0;

  // Brackets a batch of posts that must be issued together (NCCL groups; no-op over MPI).
  // Algorithms bracket through Batch (below), which closes the group on every path.
  virtual void group_start() {}
  virtual void group_end() {}
  // Closes a group left open by an exception, without throwing: the batch is incomplete,
  // so a transport whose peers match operations by order gives up its channel (NCCL: the
  // group is ended, then the communicator aborted).
  virtual void abandon_group() noexcept {}

  // Writes the indices of operations that completed since the last call to done[] (room for
  // every posted operation) and returns how many; returns -1 once every posted operation has
  // completed and been reported.
  virtual int test_some(int* done) = 0;
  // Forgets the operations posted so far (all of them must have been reported complete).
  virtual void reset() = 0;

  // The CUDA stream device transports enqueue on; null for host transports.
  virtual void* stream() const noexcept { return nullptr; }

  // Payload bytes this rank handed to the network since the counter was last zeroed.
  // Collectives count at their ring-algorithm cost: allreduce 2 (P-1)/P of the buffer,
  // allgather(v) (P-1) times the own block, reduce/bcast the buffer once (root of a bcast:
  // once per peer).
  std::uint64_t sent_bytes = 0;
};

// group_start() now, group_end() at end(); abandon_group() if the scope is left before
// end() (an exception while posting), so no NCCL group outlives the batch.
class Batch {
 public:
  explicit Batch(Transport& t) : t_(t) { t_.group_start(); }
  ~Batch() {
    if (open_) t_.abandon_group();
  }
  Batch(const Batch&) = delete;
  Batch& operator=(const Batch&) = delete;
  void end() {
    open_ = false;
    t_.group_end();
  }

 private:
  Transport& t_;
  bool open_ = true;
};

}  // namespace gradwire::coll
