// Device-memory collectives through NCCL (built only with GRADWIRE_HAVE_NCCL).
#pragma once

#include <memory>

#include "comm_impl.hpp"
#include "device_backend.hpp"

namespace gradwire::detail {

// Collective over c.comm: picks the device (`device`, or local rank modulo the device count),
// rejects two ranks of one node on one GPU, makes the NCCL unique id on rank 0, broadcasts it
// over MPI, and initialises NCCL non-blocking, aborting it if `timeout_s` passes.
std::unique_ptr<DeviceBackend> make_nccl_backend(Communicator::Impl& c, int device,
                                                 double timeout_s);

}  // namespace gradwire::detail
