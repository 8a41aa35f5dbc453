// Surviving a lost rank (GRADWIRE_ON_FAILURE=shrink): ULFM's revoke/agree/shrink behind
// Communicator's error path. Builds without the ULFM extension (GRADWIRE_HAVE_ULFM=0) keep
// the same interface; the shrink policy and shrink() then fail with ErrorCode::Unsupported.
#pragma once

#include <string>
#include <vector>

#include <mpi.h>

#include "call_info.hpp"
#include "gradwire/communicator.hpp"

namespace gradwire::detail {

// Per-communicator failure state. Reached through a const Impl& (the error path is const),
// hence held by pointer.
struct FaultState {
  bool shrink = false;                 // the policy: PeerFailed and shrink() instead of abort
  bool respawn = false;                // ... and respawn() may grow back (implies shrink)
  bool failed = false;                 // a peer died; every later call fails the same way
  std::string failure;                 // what every later call repeats
  std::vector<int> lost;               // ranks of the communicator that died
  MPI_Comm survivors = MPI_COMM_NULL;  // MPIX_Comm_shrink of the communicator, once failed
  std::vector<MPI_Comm> watched;       // plans' private communicators: revoked with it
  ~FaultState();
};

// Options::on_failure, or GRADWIRE_ON_FAILURE=abort|shrink|respawn when unset; never FromEnv.
// Throws InvalidArgument for another value, Unsupported for shrink or respawn without ULFM.
Options::FailurePolicy resolve_on_failure(Options::FailurePolicy p);

// Called with every failed MPI return code. When the error means a peer died (or another
// rank revoked the communicator after seeing it die): under shrink, revokes every watched
// communicator so that ranks blocked elsewhere learn of it, agrees with the survivors, shrinks
// and throws Error(PeerFailed) naming the lost ranks; under abort, aborts the job with that
// message. Returns when the error is unrelated to a failure.
void on_mpi_error(const Communicator::Impl& c, int rc, const CallInfo& call, const char* what);

// Throws the communicator's PeerFailed error again once it has failed.
void check_not_failed(const Communicator::Impl& c, const CallInfo& call);

// Collective over the survivors: a duplicate-able communicator of them (the caller frees it).
MPI_Comm take_survivors(Communicator::Impl& c, const CallInfo& call);

// Plans register the communicators they duplicate, so a failure revokes them too.
void watch(const Communicator::Impl& c, MPI_Comm comm);
void unwatch(const Communicator::Impl& c, MPI_Comm comm) noexcept;

}  // namespace gradwire::detail
