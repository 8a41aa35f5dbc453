// Communicator: the rendezvous of a group of MPI ranks and the dense collectives on it.
#pragma once

#include <cstddef>
#include <memory>
#include <cstdint>
#include <string>
#include <vector>

#include <mpi.h>

#include "gradwire/error.hpp"
#include "gradwire/types.hpp"

namespace gradwire {

// What a wait does when it passes its deadline.
enum class OnTimeout {
  Abort,   // print the error, abort the NCCL communicator, then MPI_Abort the job (default)
  Return,  // throw gradwire::Error(ErrorCode::Timeout); the request stays pending
};

// Where a buffer lives. Auto asks the CUDA runtime (host in builds without CUDA), and only
// once some GPU's primary context (the runtime's, PyTorch's) is active, so a host-only job
// never gets a context made on GPU 0 by the question; memory of a context made through the
// driver API alone is not recognised: pass Device.
enum class Memory { Auto, Host, Device };

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
  // When the NCCL communicator is made (docs/architecture.md, "Device setup"). Lazy: at the
  // first device-memory collective, which every rank reaches together; host collectives and
  // plans never need it, whatever the GPU count. Eager: in the constructor, which then fails
  // (on every rank alike) where it cannot be made: no NCCL, no GPU, two ranks on one GPU.
  enum class DeviceSetup { Lazy, Eager } device_setup = DeviceSetup::Lazy;
  // What a peer process's death does. Abort ends the job (default). Shrink (builds against
  // an MPI with ULFM, run under `mpirun --with-ft ulfm`): every survivor throws
  // Error(PeerFailed) naming the lost ranks, from the call the death interrupted or, where
  // that call had already completed, from the next one; shrink() then gives a communicator
  // of the survivors (docs/fault-tolerance.md). Respawn: the same, and respawn() then also
  // starts one replacement per lost rank and gives a communicator of the original size and
  // numbering. Unset takes GRADWIRE_ON_FAILURE=abort|shrink|respawn.
  enum class FailurePolicy { FromEnv, Abort, Shrink, Respawn } on_failure = FailurePolicy::FromEnv;
  // The timeline (docs/timeline.md): a Chrome trace of every collective and plan run, written
  // by rank 0 to this path when the communicator is destroyed or finalized. Empty takes
  // GRADWIRE_TIMELINE (unset: off). One timeline per process: communicators made while one
  // records (splits, later ones) record into it.
  std::string timeline;
  // What respawn() and grow() start: program and arguments. Empty: this process's own
  // (/proc/self/exe and its arguments). Joiners get this rank's environment.
  std::vector<std::string> spawn_command;
};

// One buffer of application state handed to joining ranks (Communicator::share_state). The
// name and size must match on every rank.
struct StateBuffer {
  std::string name;
  void* data = nullptr;
  std::size_t count = 0;
  DType dtype = DType::Float32;
  Memory mem = Memory::Host;
};

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
  // communicator after this returns) and learns the node layout. The NCCL communicator comes
  // later, at the first device-memory collective (or here with Options::device_setup =
  // Eager). Fails with ErrorCode::Timeout, listing the ranks that did not arrive, if the
  // rendezvous passes its deadline.
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
  // Whether the NCCL communicator exists yet: false until the first device-memory collective,
  // setup_device() or an Eager constructor made it (then true on every rank), and false for
  // good where its setup failed.
  bool has_device() const;
  int device() const;                 // its CUDA device, -1 while has_device() is false
  double timeout_seconds() const;
  OnTimeout on_timeout() const;
  void set_on_timeout(OnTimeout policy);

  // A sub-communicator of the ranks with the same color, ordered by key (MPI_Comm_split).
  // Where this communicator has its NCCL communicator, the sub-communicator gets one at once,
  // split from it (ncclCommSplit); otherwise it makes its own lazily.
  Communicator split(int color, int key) const;

  // Makes the NCCL communicator now if it does not exist (what the first device-memory
  // collective would do). Collective: every rank calls it, and every rank gets the same
  // outcome, bounded by GRADWIRE_INIT_TIMEOUT. Throws Unsupported (no NCCL, or no GPU on some
  // rank), InvalidArgument (two ranks of a node on one GPU), Nccl/Cuda, or Timeout. A failure
  // is final: later device calls throw the same error at once, with no communication.
  void setup_device();
  // After ErrorCode::PeerFailed (failure policy shrink): collective over the survivors; a new
  // communicator of them, the rendezvous redone (node split, leaders, device backend). This
  // one stays failed. Plans are rebuilt on the new one (Plan::carry_residual keeps their
  // error feedback). Unsupported in builds without ULFM.
  Communicator shrink();

  // Elastic membership (ULFM builds; docs/fault-tolerance.md, "Growing back"). Each is
  // collective, bounded by GRADWIRE_INIT_TIMEOUT per step, and ends the same way on every
  // rank. `step` is where the caller is; the result's resume_step() is the largest over the
  // callers, and share_state() sends from the lowest rank that gave it.
  //
  // respawn(): after PeerFailed under FailurePolicy::Respawn, shrinks, spawns one replacement
  // per lost rank (Options::spawn_command) and merges: rank r is rank r again. If the spawn
  // fails or a replacement dies before it is merged in, every survivor gets the shrunk
  // communicator instead (same size on all). Without a failure: a copy.
  Communicator respawn(std::uint64_t step);
  // At a step boundary (every rank calls it with the same n >= 0): spawns n more processes;
  // they take ranks size()..size()+n-1. On an agreed failure to start them, the result is
  // this communicator again. Unsupported without ULFM; InvalidArgument if n differs by rank.
  Communicator grow(int n, std::uint64_t step);
  // True in a process that a respawn() or grow() started: its constructor joined the running
  // job instead of making a communicator of `comm` (MPI_Comm_get_parent and GRADWIRE_JOIN).
  bool joined() const;
  static bool joining();  // before the constructor: whether it will join
  std::uint64_t resume_step() const;  // agreed step of the last membership change (0: none)
  // Collective: every rank gets the source rank's buffers (the lowest rank at resume_step()
  // that was a member before; rank 0 after no membership change). Mismatch on every rank if
  // names, counts or dtypes differ.
  void share_state(const std::vector<StateBuffer>& buffers);

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
