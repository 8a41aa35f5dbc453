// The transport and executor of a device plan whose algorithm runs on the GPU (registry:
// device_native): the CUDA executor on the run's stream, and one transport agreed by every
// rank (docs/compressed-collectives.md, "Device memory"):
//   "nccl"                  every rank has its own GPU (no two ranks of a host on one) and the
//                           build has NCCL: grouped ncclSend/ncclRecv on the communicator's
//                           NCCL communicator (made now if it is not yet);
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
  ~DevicePath();
  // The stream of the next run (a cudaStream_t; null: the default stream).
  void set_stream(void* stream);
  std::uint64_t pcie_bytes() const;  // since the last zero_counters()
  void zero_counters();
};

// Collective over c (its rendezvous communicator): agrees on the transport and makes it.
// comm: the plan's own duplicate. Failures are agreed (every rank throws the same code).
std::unique_ptr<DevicePath> make_device_path(Communicator::Impl& c, const CallInfo& call,
                                             MPI_Comm comm, int max_ops);

}  // namespace gradwire::detail
