#include <sched.h>

#include <algorithm>
#include <cstdio>

#include "device_backend.hpp"
#include "request_state.hpp"

namespace gradwire {

Request::State::~State() {
  if (done || !comm) return;
  // The transfer still reads or writes `temp`: it must end before the memory goes. Waiting is
  // bounded by the call's own deadline (already passed after a recovered timeout: then one
  // last poll), and never aborts: what has not completed by then is leaked quietly, since a
  // peer that is gone may never complete it.
  try {
    const std::int64_t until =
        std::max(created_ns + detail::timeout_ns(comm->timeout_s), detail::monotonic_ns());
    while (!poll()) {
      if (detail::monotonic_ns() >= until) break;
      sched_yield();
    }
  } catch (...) {
    done = false;  // failed: MPI's state of the request is unknown, so leak it too
  }
  if (done) return;
  comm->pending_leaked = true;
  if (!temp.empty()) new std::vector<std::byte>(std::move(temp));    // NOLINT: leaked on purpose
  if (!temp2.empty()) new std::vector<std::byte>(std::move(temp2));  // NOLINT
}

bool Request::State::poll() {
  if (done) return true;
  if (event) {
    if (!comm->device->query(event, call)) return false;
    comm->device->release_event(event);
    event = nullptr;
  } else if (progress) {
    if (!progress()) return false;
  } else if (!mpi.empty()) {
    int flag = 0;
    const int rc = detail::test_all(mpi, &flag);
    if (rc != MPI_SUCCESS) {
      done = true;  // the error ends the call: never waited on again
      comm->check_mpi(rc, call, "MPI_Testall");
    }
    if (!flag) return false;
  }
  done = true;
  if (finish) finish();
  // Non-blocking dense calls ("iallreduce", ...) from post to completion, as async events
  // (requests may overlap without nesting); blocking ones and plan runs record their own span.
  if (timeline_t0 && !progress && call.collective[0] == 'i')
    timeline::async_since(call.collective, timeline_t0, call.count * dtype_size(call.dtype), -1);
  return true;
}

void detail::poll_until_done(const Communicator::Impl& c, const CallInfo& call,
                             OnTimeout policy, const std::function<bool()>& poll) {
  const std::int64_t deadline = monotonic_ns() + timeout_ns(c.timeout_s);
  // Spin first (latency), then yield: on an oversubscribed node the peer needs our core.
  for (unsigned spins = 0; !poll(); ++spins) {
    if ((spins & 63u) == 0 && monotonic_ns() > deadline) c.timed_out(call, policy);
    if (spins > 1000) sched_yield();
  }
}

void Request::State::wait(OnTimeout policy) {
  detail::poll_until_done(*comm, call, policy, [this] { return poll(); });
}

Request::Request() = default;
Request::~Request() = default;
Request::Request(Request&&) noexcept = default;
Request& Request::operator=(Request&&) noexcept = default;
Request::Request(std::unique_ptr<State> s) : state_(std::move(s)) {}

bool Request::test() {
  if (!state_) throw Error(ErrorCode::InvalidArgument, "gradwire: test() on an empty request");
  return state_->poll();
}

void Request::wait() {
  if (!state_) throw Error(ErrorCode::InvalidArgument, "gradwire: wait() on an empty request");
  state_->wait(state_->comm->policy);
}

}  // namespace gradwire

namespace gradwire::detail {

WorldErrorsReturn::WorldErrorsReturn() noexcept {
  MPI_Comm_get_errhandler(MPI_COMM_WORLD, &saved_);
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
}

WorldErrorsReturn::~WorldErrorsReturn() {
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, saved_);
  MPI_Errhandler_free(&saved_);
}

// Polled with MPI_Request_get_status, which invokes no error handler; once everything is
// complete, MPI_Testall frees the requests and returns the first error, with MPI_COMM_WORLD's
// handler set to return for that one call (Open MPI 4.1 raises a failed non-blocking
// collective there, not on the request's communicator, so a count mismatch would otherwise end
// the process without a word from gradwire).
int test_all(std::vector<MPI_Request>& reqs, int* flag) {
  *flag = 0;
  for (MPI_Request r : reqs) {
    if (r == MPI_REQUEST_NULL) continue;
    int done = 0;
    const int rc = MPI_Request_get_status(r, &done, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) return rc;
    if (!done) return MPI_SUCCESS;
  }
  std::vector<MPI_Status> st(reqs.size());
  int rc = MPI_SUCCESS;
  {
    WorldErrorsReturn guard;
    rc = MPI_Testall(static_cast<int>(reqs.size()), reqs.data(), flag, st.data());
  }
  if (rc == MPI_ERR_IN_STATUS) {
    for (const MPI_Status& s : st)
      if (s.MPI_ERROR != MPI_SUCCESS && s.MPI_ERROR != MPI_ERR_PENDING) return s.MPI_ERROR;
  }
  return rc;
}

}  // namespace gradwire::detail
