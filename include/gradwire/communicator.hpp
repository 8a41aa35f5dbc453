// Communicator: the rendezvous of a group of MPI ranks and the dense collectives on it.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include <mpi.h>

#include "gradwire/error.hpp"
#include "gradwire/types.hpp"

namespace gradwire {

// What a wait does when it passes its deadline.
enum class OnTimeout {
  Abort,   // print the error, abort the NCCL communicator, then MPI_Abort the job (default)
  Return,  // throw gradwire::Error(ErrorCode::Timeout); the request stays pending
};

struct Options {
  // Deadline of every wait, in seconds: at most 1e6, or HUGE_VAL for none. <= 0 takes
  // GRADWIRE_TIMEOUT from the environment (default 300; also "inf" or "none").
  double timeout_s = -1;
  // Deadline of the rendezvous, same range. <= 0 takes GRADWIRE_INIT_TIMEOUT (default 300).
  double init_timeout_s = -1;
  // Unset takes GRADWIRE_ON_TIMEOUT=abort|return (default abort).
  enum class Policy { FromEnv, Abort, Return } on_timeout = Policy::FromEnv;
  // CUDA device for NCCL; -1 picks local rank modulo the device count.
  int device = -1;
  // Ranks per node, overriding MPI's shared-memory split (testing hierarchy on one host);
  // 0 takes GRADWIRE_NODE_SPLIT, and when that is unset, MPI's split.
  int ranks_per_node = 0;
  // Checked mode: 1 on, 0 off, < 0 takes GRADWIRE_CHECK=0|1 (default 0). Every collective
  // (and plan creation and run) first agrees on (collective, dtype, op, count, root, plan) with
  // one small MPI_Allreduce; ranks that disagree all fail with ErrorCode::Mismatch naming the
  // field and the ranks. Costs one small allreduce per call (docs/collectives.md).
  int check = -1;
};

// Where a buffer lives. Auto asks the CUDA runtime (host in builds without CUDA).
enum class Memory { Auto, Host, Device };

class Communicator;

// A collective in flight. Waiting is bounded by the communicator's timeout.
class Request {
 public:
  Request();
  // Waits for an unfinished collective at most until its deadline (posting time + timeout),
  // never aborts; one that still has not finished (a peer gone) is leaked, buffers included,
  // since MPI may still write them.
  ~Request();
  Request(Request&&) noexcept;
  Request& operator=(Request&&) noexcept;
  Request(const Request&) = delete;
  Request& operator=(const Request&) = delete;

  // True once the collective is complete (and its result is in place).
  bool test();
  // Blocks until done or the deadline passes (then as OnTimeout says).
  void wait();
  bool valid() const noexcept { return state_ != nullptr; }

  struct State;
  explicit Request(std::unique_ptr<State> s);

 private:
  std::unique_ptr<State> state_;
};

class Communicator {
 public:
  // Collective over `comm`: duplicates it (gradwire never sends on the caller's
  // communicator after this returns), learns the node layout and, with NCCL and a GPU,
  // creates the NCCL communicator. Fails with ErrorCode::Timeout, listing the ranks that did
  // not arrive, if the rendezvous passes its deadline.
  explicit Communicator(MPI_Comm comm, const Options& options = {});
  ~Communicator();
  Communicator(Communicator&&) noexcept;
  Communicator& operator=(Communicator&&) noexcept;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const;
  int size() const;
  int local_rank() const;   // rank among the ranks of this node
  int local_size() const;
  int node() const;         // index of this rank's node, 0..node_count()-1
  int node_count() const;
  MPI_Comm mpi_comm() const;     // gradwire's private duplicate
  MPI_Comm local_comm() const;   // the ranks of this node
  MPI_Comm leaders_comm() const; // local rank 0 of every node; MPI_COMM_NULL elsewhere
  double rendezvous_seconds() const;  // wall time the constructor spent meeting its peers
  bool has_device() const;            // an NCCL communicator exists
  int device() const;                 // its CUDA device, -1 without one
  double timeout_seconds() const;
  OnTimeout on_timeout() const;
  void set_on_timeout(OnTimeout policy);

  // A sub-communicator of the ranks with the same color, ordered by key (MPI_Comm_split).
  Communicator split(int color, int key) const;

  // Releases MPI/NCCL resources; any later call fails with ErrorCode::Finalized.
  void finalize();

  // recv may equal send (in place). Device buffers go through NCCL on this communicator's
  // stream, host buffers through MPI's own collectives.
  void allreduce(const void* send, void* recv, std::size_t count, DType dtype, ReduceOp op,
                 Memory mem = Memory::Auto);
  Request iallreduce(const void* send, void* recv, std::size_t count, DType dtype,
                     ReduceOp op, Memory mem = Memory::Auto);
  // recv holds size()*count elements, rank r's block at r*count. In place when
  // send == recv + rank()*count elements.
  void allgather(const void* send, void* recv, std::size_t count, DType dtype,
                 Memory mem = Memory::Auto);
  Request iallgather(const void* send, void* recv, std::size_t count, DType dtype,
                     Memory mem = Memory::Auto);
  // send holds size()*recv_count elements; rank r receives the reduction of block r. In
  // place when recv == send + rank()*recv_count elements.
  void reduce_scatter(const void* send, void* recv, std::size_t recv_count, DType dtype,
                      ReduceOp op, Memory mem = Memory::Auto);
  Request ireduce_scatter(const void* send, void* recv, std::size_t recv_count, DType dtype,
                          ReduceOp op, Memory mem = Memory::Auto);
  void broadcast(void* buf, std::size_t count, DType dtype, int root,
                 Memory mem = Memory::Auto);
  Request ibroadcast(void* buf, std::size_t count, DType dtype, int root,
                     Memory mem = Memory::Auto);

  struct Impl;
  Impl& impl() const;  // for gradwire's own layers (collectives/, the C ABI)

 private:
  explicit Communicator(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

// "gradwire <version> (MPI, CUDA, NCCL)": what this build contains.
std::string build_info();

}  // namespace gradwire
