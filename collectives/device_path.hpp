// The transport and executor of a device plan whose algorithm runs on the GPU (registry:
// device_native): the CUDA executor on the run's stream, and one transport agreed by every
// rank (docs/compressed-collectives.md, "Device memory"):
//   "nccl"                  every rank has its own GPU (no two ranks of a host on one) and the
//                           build has NCCL: grouped ncclSend/ncclRecv on an NCCL communicator
//                           of the plan's own, split from the communicator's (made now if it
//                           is not yet), as MPI plans have a duplicate of their own: two plans
//                           in flight never interleave their NCCL operations;
//   "mpi-cuda-aware"        else, when every rank's MPI says MPIX_Query_cuda_support() == 1:
//                           device pointers straight to MPI;
//   "mpi+staged-compressed" else: only the compressed messages through pinned host memory.
#pragma once

#include <memory>
#include <string>

#include <mpi.h>

#include "call_info.hpp"
#include "codec/executor.hpp"
#include "comm_impl.hpp"
#include "transport/transport.hpp"

namespace gradwire::detail {

struct DevicePath {
  std::unique_ptr<exec::Executor> x;
  // On the plan's duplicate communicator (MPI) or NCCL's; the plan takes `owned` (it keeps
  // its transports), `t` stays valid as long as the plan does.
  std::unique_ptr<coll::Transport> owned;
  coll::Transport* t = nullptr;
  std::string transport;
  // The GPU the plan runs on (the one the communicator's NCCL communicator uses or would use:
  // Options::device, else local rank modulo the GPU count); made current at each entry.
  int device = -1;
  ~DevicePath();
  // A run abandoned unfinished (its plan leaks the rest): the NCCL transport's communicator
  // is aborted, so no kernel of it waits for peers any more. No-op for MPI transports.
  void abort() noexcept;
  // The stream of the next run (a cudaStream_t; null: the default stream).
  void set_stream(void* stream);
  std::uint64_t pcie_bytes() const;  // since the last zero_counters()
  void zero_counters();
};

// The GPU of c's device plans: its NCCL communicator's, or the one the NCCL setup would pick
// (Options::device, else local rank modulo the GPU count); -1 in builds without CUDA.
int plan_device(const Communicator::Impl& c);

// Collective over c (its rendezvous communicator): agrees on the transport and makes it.
// comm: the plan's own duplicate. Failures are agreed (every rank throws the same code).
std::unique_ptr<DevicePath> make_device_path(Communicator::Impl& c, const CallInfo& call,
                                             MPI_Comm comm, int max_ops);

}  // namespace gradwire::detail
