#include "fault/ulfm.hpp"

#include <algorithm>

#include "comm_impl.hpp"
#include "config.hpp"
#include "gradwire/config.hpp"
#include "watchdog.hpp"

#if GRADWIRE_HAVE_ULFM
#include <mpi-ext.h>
#endif

namespace gradwire::detail {

FaultState::~FaultState() {
  int down = 0;
  MPI_Finalized(&down);
  if (!down && survivors != MPI_COMM_NULL) MPI_Comm_free(&survivors);
}

Options::FailurePolicy resolve_on_failure(Options::FailurePolicy p) {
  using P = Options::FailurePolicy;
  if (p == P::FromEnv) {
    const std::string v = env_string("GRADWIRE_ON_FAILURE");
    if (!v.empty() && v != "abort" && v != "shrink" && v != "respawn") {
      throw Error(ErrorCode::InvalidArgument, "gradwire: GRADWIRE_ON_FAILURE='" + v +
                                                  "' is not one of: abort, shrink, respawn");
    }
    p = v == "shrink" ? P::Shrink : v == "respawn" ? P::Respawn : P::Abort;
  }
#if !GRADWIRE_HAVE_ULFM
  if (p != P::Abort) {
    throw Error(ErrorCode::Unsupported,
                std::string("gradwire: GRADWIRE_ON_FAILURE=") +
                    (p == P::Shrink ? "shrink" : "respawn") +
                    " needs an MPI with the ULFM extension "
                    "(MPIX_Comm_shrink; Open MPI 5, run with mpirun --with-ft ulfm); this build's "
                    "MPI has none: rebuild with -DMPI_HOME=<Open MPI 5 prefix> (scripts/setup.sh "
                    "--ompi5 installs one)");
  }
#endif
  return p;
}

void check_not_failed(const Communicator::Impl& c, const CallInfo& call) {
  if (c.fault && c.fault->failed) c.fail(ErrorCode::PeerFailed, call, c.fault->failure);
}

void watch(const Communicator::Impl& c, MPI_Comm comm) {
  if (c.fault && comm != MPI_COMM_NULL) c.fault->watched.push_back(comm);
}

void unwatch(const Communicator::Impl& c, MPI_Comm comm) noexcept {
  if (!c.fault) return;
  auto& w = c.fault->watched;
  w.erase(std::remove(w.begin(), w.end(), comm), w.end());
}

#if GRADWIRE_HAVE_ULFM
namespace {

std::string class_name(int ec) {
  if (ec == MPIX_ERR_PROC_FAILED) return "MPIX_ERR_PROC_FAILED";
  if (ec == MPIX_ERR_PROC_FAILED_PENDING) return "MPIX_ERR_PROC_FAILED_PENDING";
  if (ec == MPIX_ERR_REVOKED) return "MPIX_ERR_REVOKED";
  if (ec == MPI_ERR_IN_STATUS) return "MPI_ERR_IN_STATUS";
  return "error class " + std::to_string(ec);
}

bool revoked(MPI_Comm comm) {
  int flag = 0;
  return comm != MPI_COMM_NULL && MPIX_Comm_is_revoked(comm, &flag) == MPI_SUCCESS && flag;
}

// A failure this process already knows of (a request's status said so, or another rank
// revoked one of our communicators). MPI_Testsome/Testall report it as MPI_ERR_IN_STATUS.
bool failure_known(const Communicator::Impl& c) {
  if (revoked(c.comm)) return true;
  for (MPI_Comm w : c.fault->watched)
    if (revoked(w)) return true;
  MPIX_Comm_failure_ack(c.comm);
  MPI_Group g = MPI_GROUP_NULL;
  int n = 0;
  if (MPIX_Comm_failure_get_acked(c.comm, &g) == MPI_SUCCESS) {
    MPI_Group_size(g, &n);
    MPI_Group_free(&g);
  }
  return n > 0;
}

// Ranks of `comm` that are not in `survivors`.
std::vector<int> lost_ranks(MPI_Comm comm, MPI_Comm survivors) {
  MPI_Group all, alive, dead;
  MPI_Comm_group(comm, &all);
  MPI_Comm_group(survivors, &alive);
  MPI_Group_difference(all, alive, &dead);
  int n = 0;
  MPI_Group_size(dead, &n);
  std::vector<int> in(static_cast<std::size_t>(n)), out(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) in[static_cast<std::size_t>(i)] = i;
  if (n > 0) MPI_Group_translate_ranks(dead, n, in.data(), all, out.data());
  MPI_Group_free(&dead);
  MPI_Group_free(&alive);
  MPI_Group_free(&all);
  return out;
}

}  // namespace

void on_mpi_error(const Communicator::Impl& c, int rc, const CallInfo& call, const char* what) {
  if (!c.fault) return;
  FaultState& f = *c.fault;
  if (f.failed) c.fail(ErrorCode::PeerFailed, call, f.failure);
  int ec = 0;
  MPI_Error_class(rc, &ec);
  const bool failure_class =
      ec == MPIX_ERR_PROC_FAILED || ec == MPIX_ERR_PROC_FAILED_PENDING || ec == MPIX_ERR_REVOKED;
  if (!failure_class && !(ec == MPI_ERR_IN_STATUS && failure_known(c))) return;
  const std::string cause = std::string(what) + " returned " + class_name(ec);
  if (!f.shrink) {
    c.abort_job(message(c.rank, c.size, call,
                        "a peer process failed (" + cause +
                            "); GRADWIRE_ON_FAILURE=abort: aborting the job"));
  }
  // Ranks blocked in another call (or on a plan's communicator) learn of the failure from
  // the revocation instead of waiting on a peer that will never answer.
  for (MPI_Comm w : f.watched) MPIX_Comm_revoke(w);
  for (MPI_Comm w : {c.local, c.leaders})
    if (w != MPI_COMM_NULL) MPIX_Comm_revoke(w);
  MPIX_Comm_revoke(c.comm);
  CallInfo agreeing = call;
  agreeing.collective = "failure agreement (MPIX_Comm_agree, MPIX_Comm_shrink)";
  {
    // A survivor that never reaches this point (alive but stalled) ends the job at the
    // deadline: ULFM cannot shrink out a live process.
    // (The error path is const; arming the slot only stores atomics.)
    Armed guard(const_cast<WatchSlot&>(c.watch), c.timeout_s, agreeing);
    MPIX_Comm_failure_ack(c.comm);
    int flag = 1;
    MPIX_Comm_agree(c.comm, &flag);  // every survivor has seen the failure
    const int src = MPIX_Comm_shrink(c.comm, &f.survivors);
    if (src != MPI_SUCCESS) {
      f.survivors = MPI_COMM_NULL;
      c.abort_job(message(c.rank, c.size, agreeing, "MPIX_Comm_shrink failed after " + cause));
    }
  }
  f.lost = lost_ranks(c.comm, f.survivors);
  std::string ranks;
  for (int r : f.lost) ranks += (ranks.empty() ? "" : ", ") + std::to_string(r);
  f.failed = true;
  f.failure = "peer failed: " + std::to_string(f.lost.size()) + " rank(s) lost: ranks " + ranks +
              " (" + cause + (f.respawn ? "); call respawn() to grow back, or shrink() to go on with the survivors"
                          : "); call shrink() to go on with the survivors");
  c.fail(ErrorCode::PeerFailed, call, f.failure);
}

MPI_Comm take_survivors(Communicator::Impl& c, const CallInfo& call) {
  if (!c.fault || !c.fault->shrink) {
    c.fail(ErrorCode::InvalidArgument, call,
           std::string(call.collective) + "() needs the " + call.collective +
               " failure policy (Options::on_failure or GRADWIRE_ON_FAILURE=" + call.collective +
               ")");
  }
  FaultState& f = *c.fault;
  MPI_Comm out = MPI_COMM_NULL;
  if (f.survivors != MPI_COMM_NULL) {
    out = f.survivors;  // made by the failure agreement; handed over
    f.survivors = MPI_COMM_NULL;
    return out;
  }
  if (f.failed) c.fail(ErrorCode::InvalidArgument, call, "shrink() already called on this communicator");
  // No failure seen yet: shrink out whoever has died (nobody: a copy of every rank).
  Armed guard(c.watch, c.timeout_s, call);
  const int rc = MPIX_Comm_shrink(c.comm, &out);
  if (rc != MPI_SUCCESS) c.check_mpi(rc, call, "MPIX_Comm_shrink");
  return out;
}

#else  // no ULFM: a dead peer is an MPI error (or the runtime ends the job)

void on_mpi_error(const Communicator::Impl&, int, const CallInfo&, const char*) {}

MPI_Comm take_survivors(Communicator::Impl& c, const CallInfo& call) {
  c.fail(ErrorCode::Unsupported, call,
         "shrink() needs an MPI with the ULFM extension (MPIX_Comm_shrink; Open MPI 5 run "
         "with mpirun --with-ft ulfm); this build's MPI has none");
}

#endif

}  // namespace gradwire::detail
