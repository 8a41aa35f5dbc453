#include "transport/nccl_calls.hpp"

#include <sched.h>

#include <chrono>

namespace gradwire::detail::nccl {
namespace {

using Clock = std::chrono::steady_clock;

Clock::time_point deadline_after(double timeout_s) {
  if (!(timeout_s > 0)) return Clock::now();
  if (timeout_s > 1e9) timeout_s = 1e9;  // "forever" without overflowing the clock
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(
                            std::chrono::duration<double>(timeout_s));
}

}  // namespace

ncclResult_t settle(ncclComm_t comm, double timeout_s) noexcept {
  if (!comm) return ncclInvalidArgument;
  const auto deadline = deadline_after(timeout_s);
  for (unsigned spins = 0;; ++spins) {
    ncclResult_t state = ncclInProgress;
    if (ncclCommGetAsyncError(comm, &state) != ncclSuccess) return ncclInternalError;
    if (state != ncclInProgress) return state;
    if (Clock::now() > deadline) return ncclInProgress;
    if (spins > 1000) sched_yield();
  }
}

std::string describe(ncclComm_t comm, ncclResult_t r, const char* what) {
  const char* last = comm ? ncclGetLastError(comm) : nullptr;
  return std::string(what) + " failed: " + ncclGetErrorString(r) +
         (last && *last ? std::string(": ") + last : "");
}

ncclComm_t split_child(ncclComm_t& parent, int color, int key, double timeout_s,
                       std::string& error) noexcept {
  if (!parent) {
    error = "ncclCommSplit: the parent's NCCL communicator was aborted";
    return nullptr;
  }
  // The slot NCCL's background job stores the child into. It is freed only once that job is
  // known to be over; when gradwire gives up on a stuck parent it is leaked (one pointer).
  auto* slot = new (std::nothrow) ncclComm_t(nullptr);
  if (!slot) {
    error = "ncclCommSplit: out of memory";
    return nullptr;
  }
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // as every communicator gradwire makes: never mixed in one group
  // splitShare stays 0: a child sharing the parent's resources shares its abort flag, so
  // aborting one would abort both (ncclCommInitChildComm: shareResources).
  const ncclResult_t r = ncclCommSplit(parent, color, key, slot, &config);
  if (r != ncclSuccess && r != ncclInProgress) {
    // Refused before any job was launched: NCCL set the slot to NULL and wrote nothing more.
    error = describe(parent, r, "ncclCommSplit");
    delete slot;
    return nullptr;
  }
  // The split runs as a job of the parent: the parent answers ncclInProgress until the child
  // has been stored.
  const ncclResult_t drained = settle(parent, timeout_s);
  if (drained == ncclInProgress) {
    error = "ncclCommSplit did not complete within " + std::to_string(timeout_s) +
            " s (the parent stayed in ncclInProgress)";
    // Aborting the parent stops its job; whatever child it stored is aborted too. The slot
    // stays allocated: no promise covers a write racing the abort.
    ncclCommAbort(parent);
    parent = nullptr;
    const ncclComm_t late = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (late) ncclCommAbort(late);
    return nullptr;
  }
  const ncclComm_t child = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
  delete slot;  // the job is over: nothing writes the slot any more
  if (drained != ncclSuccess) {
    error = describe(parent, drained, "ncclCommSplit (the parent's asynchronous state)");
    if (child) ncclCommAbort(child);
    return nullptr;
  }
  if (!child) {
    error = "ncclCommSplit completed without a child communicator";
    return nullptr;
  }
  const ncclResult_t state = settle(child, timeout_s);
  if (state != ncclSuccess) {
    error = state == ncclInProgress
                ? "the child of ncclCommSplit stayed in ncclInProgress for " +
                      std::to_string(timeout_s) + " s"
                : describe(child, state, "ncclCommSplit (the child)");
    ncclCommAbort(child);
    return nullptr;
  }
  return child;
}

void close(ncclComm_t comm, double timeout_s) noexcept {
  if (!comm) return;
  bool quiescent = false;
  const ncclResult_t r = ncclCommFinalize(comm);
  if (r == ncclSuccess || r == ncclInProgress) quiescent = settle(comm, timeout_s) == ncclSuccess;
  // A failed destroy may have freed part of the communicator: never abort it afterwards.
  if (quiescent) {
    (void)ncclCommDestroy(comm);
  } else {
    (void)ncclCommAbort(comm);
  }
}

}  // namespace gradwire::detail::nccl
