#include <sched.h>

#include <cstdio>

#include "device_backend.hpp"
#include "request_state.hpp"

namespace gradwire {

Request::State::~State() {
  if (done || !comm) return;
  // The transfer still reads or writes `temp`: it must end before the memory goes.
  try {
    wait(OnTimeout::Abort);
  } catch (const std::exception& e) {
    comm->abort_job(e.what());
  }
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
    comm->check_mpi(MPI_Testall(static_cast<int>(mpi.size()), mpi.data(), &flag,
                                MPI_STATUSES_IGNORE),
                    call, "MPI_Testall");
    if (!flag) return false;
  }
  done = true;
  if (finish) finish();
  return true;
}

void detail::poll_until_done(const Communicator::Impl& c, const CallInfo& call,
                             OnTimeout policy, const std::function<bool()>& poll) {
  const std::int64_t deadline = monotonic_ns() + static_cast<std::int64_t>(c.timeout_s * 1e9);
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
