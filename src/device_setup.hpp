// The lazy device setup: the NCCL communicator is made at the first device-memory collective
// (or by Communicator::setup_device / Options::device_setup = Eager), never for host work.
// Every step is collective over the communicator and agreed: all ranks end with a backend, or
// all fail with the same error code naming the same rank (docs/architecture.md).
#pragma once

#include <cstdint>

#include "comm_impl.hpp"
#include "device_backend.hpp"

namespace gradwire::detail {

// c's device backend, made now if it does not exist. Collective over c.comm: every rank must
// reach the call that makes it (a device-memory collective is one: all ranks call it
// together). Each MPI step is bounded by c.init_timeout_s; past it, c.policy decides (abort
// the job, or throw Timeout). A failure is kept: later calls throw it at once, locally.
DeviceBackend& ensure_device(Communicator::Impl& c, const CallInfo& call);

// Gives `child` (just made by MPI_Comm_split of `parent` with `color`) its device backend:
// ncclCommSplit from the parent's when the parent has one (collective over the parent's
// ranks, agreed over the child's); else, when `eager`, ensure_device(child). A failed split is
// kept as the child's device failure; host work on the child is unaffected.
void inherit_device(Communicator::Impl& parent, Communicator::Impl& child, int color,
                    bool eager, const CallInfo& call);

// How many device setups this process has started (tests: host work must start none).
std::uint64_t device_setups_started() noexcept;

}  // namespace gradwire::detail
