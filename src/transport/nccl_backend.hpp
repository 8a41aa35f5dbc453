// Device-memory collectives through NCCL (built only with GRADWIRE_HAVE_NCCL). The pieces of
// the device setup that touch CUDA and NCCL; src/device_setup.cpp runs them in order, between
// the MPI steps that make every rank agree (docs/architecture.md, "Device setup").
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "comm_impl.hpp"
#include "device_backend.hpp"

namespace gradwire::detail {

inline constexpr std::size_t kNcclIdBytes = 128;  // NCCL_UNIQUE_ID_BYTES

// The GPU this rank would use: `requested` (Options::device), or local rank modulo the
// device count; made current on the calling thread. Local: no communication.
struct NcclDevice {
  int device = -1;
  std::string bus_id;  // PCI bus id, to find two ranks of a host on one GPU
};
DeviceProblem pick_nccl_device(const Communicator::Impl& c, int requested, NcclDevice& out);

// Rank 0's part of a fresh NCCL communicator: its unique id (kNcclIdBytes bytes).
DeviceProblem nccl_unique_id(char* id);

// This rank's NCCL communicator for c, initialised non-blocking from `id` on `device` and
// polled until `timeout_s` passes. Never throws: null and `error` on failure (what was made
// is aborted). The other ranks must learn of a failure (device_setup.cpp agrees on it).
std::unique_ptr<DeviceBackend> init_nccl_backend(Communicator::Impl& c, int device,
                                                 const char* id, double timeout_s,
                                                 std::string& error) noexcept;

}  // namespace gradwire::detail
