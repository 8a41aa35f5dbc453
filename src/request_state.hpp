// What a Request holds while its collective is in flight.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <vector>

#include <mpi.h>

#include "call_info.hpp"
#include "comm_impl.hpp"
#include "timeline.hpp"

namespace gradwire {

struct Request::State {
  std::shared_ptr<Communicator::Impl> comm;
  detail::CallInfo call;
  std::vector<MPI_Request> mpi;       // host path: the MPI requests to complete
  void* event = nullptr;              // device path: a CUDA event recorded after the call
  std::function<void()> finish;       // runs once, after completion (e.g. avg's division)
  // Multi-stage operations (plans): advances them by one non-blocking step and says whether
  // they are complete. Polled instead of `mpi` when set.
  std::function<bool()> progress;
  std::vector<std::byte> temp, temp2; // buffers the transfer reads or writes
  bool done = false;
  // When the call was posted (monotonic ns): the destructor waits no longer than this plus the
  // communicator's timeout.
  std::int64_t created_ns = detail::monotonic_ns();
  std::int64_t timeline_t0 = timeline::active() ? timeline::now_ns() : 0;  // 0: timeline off

  ~State();
  // One non-blocking check; runs `finish` on completion.
  bool poll();
  // Polls until done or the deadline; on expiry, as the communicator's policy says.
  void wait(OnTimeout policy);
};

namespace detail {
// MPI_Testall that reports a failed request as a return code instead of invoking an error
// handler (Open MPI raises errors of non-blocking collectives on MPI_COMM_WORLD's handler).
int test_all(std::vector<MPI_Request>& reqs, int* flag);
// For the duration of one completing call (MPI_Testall/Testsome): errors that Open MPI raises
// on MPI_COMM_WORLD come back as return codes. The caller's handler is restored after.
class WorldErrorsReturn {
 public:
  WorldErrorsReturn() noexcept;
  ~WorldErrorsReturn();
  WorldErrorsReturn(const WorldErrorsReturn&) = delete;
  WorldErrorsReturn& operator=(const WorldErrorsReturn&) = delete;

 private:
  MPI_Errhandler saved_ = MPI_ERRHANDLER_NULL;
};
// Calls `poll` until it returns true; past the communicator's timeout, aborts or throws as
// `policy` says. The one wait loop behind requests and plans.
void poll_until_done(const Communicator::Impl& c, const CallInfo& call, OnTimeout policy,
                     const std::function<bool()>& poll);
}  // namespace detail

}  // namespace gradwire
