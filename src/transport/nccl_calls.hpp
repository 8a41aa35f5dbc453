// The NCCL call sequences whose order NCCL's contract fixes, in one place (NCCL builds only).
// Kept free of MPI and of the communicator, so the unit tier checks gradwire's handling of
// them against a link-time stand-in for NCCL (tests/standin/).
//
// - A non-blocking communicator answers ncclInProgress until a call has finished; the next
//   call on it before then fails ("Attempt to use communicator before the previous operation
//   returned ncclSuccess", ncclCommEnsureReady in init.cc): settle() polls it out.
// - ncclCommSplit of a non-blocking parent runs as a background job *of the parent*
//   (ncclCommInitChildComm: ncclAsyncLaunch(..., comm)); the child's handle is NULL until the
//   job stores it (ncclCommInitRankFunc). So the parent is drained first, then the child read,
//   and the slot NCCL writes outlives the job even when gradwire gives up (split_child()).
// - Everything between ncclGroupStart and ncclGroupEnd is deferred into the thread's group;
//   a group left open captures every later NCCL call on the thread (ncclCommDestroy, which
//   forces blocking mode, then fails: "Blocking and nonblocking communicators are not allowed
//   in the same group", ncclAsyncLaunch in group.cc). NcclTransport (nccl_p2p.hpp) and
//   coll::Batch (transport.hpp) close it on every path.
#pragma once

#include <nccl.h>

#include <string>

namespace gradwire::detail::nccl {

// Polls ncclCommGetAsyncError until `comm` leaves ncclInProgress or `timeout_s` has passed;
// returns its state (ncclInProgress: still in progress at the deadline).
ncclResult_t settle(ncclComm_t comm, double timeout_s) noexcept;

// "what failed: <NCCL's text>: <ncclGetLastError>"
std::string describe(ncclComm_t comm, ncclResult_t r, const char* what);

// A child of `parent` by ncclCommSplit (non-blocking config), settled: the parent drained
// before the child is read, the child then settled too. Null and `error` on failure or past
// `timeout_s`; then the parent is left usable if it drained, else aborted (and `parent` set
// to null: the caller must not use it again), and whatever child NCCL made is aborted.
ncclComm_t split_child(ncclComm_t& parent, int color, int key, double timeout_s,
                       std::string& error) noexcept;

// Finalize, wait until `comm` is quiescent (at most `timeout_s`), destroy; on an error or past
// the deadline, ncclCommAbort, which never waits for peers. Null is a no-op.
void close(ncclComm_t comm, double timeout_s) noexcept;

}  // namespace gradwire::detail::nccl
