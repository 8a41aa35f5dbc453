// Small collectives (agreements, the residual file's reduce and broadcasts, split's barrier)
// under the communicator's deadline and OnTimeout policy, so that no wait is unbounded and
// OnTimeout::Return is honoured outside the dense collectives too.
#pragma once

#include <cstddef>
#include <cstring>
#include <functional>
#include <vector>

#include <mpi.h>

#include "call_info.hpp"
#include "comm_impl.hpp"

namespace gradwire::detail {

// Posts start(buffer, &request), a non-blocking MPI call on `data`'s storage, and polls it until
// done or the deadline; then returns `data` (with MPI's result). On timeout or error the
// request and `data` are orphaned on the communicator (MPI may still write there) and the
// error is thrown (or, under OnTimeout::Abort, the job is ended).
std::vector<std::byte> bounded(Communicator::Impl& c, const CallInfo& call, const char* what,
                               std::vector<std::byte> data,
                               const std::function<int(void* buf, MPI_Request* req)>& start);

// Every rank of c's communicator has arrived at this call, within the deadline and policy: for
// a step that cannot be given a deadline of its own (MPI_Comm_split, a blocking probe), which
// then runs under the watchdog knowing that no peer is late. Two barrier rounds: a rank whose
// first round timed out never posts the second, so the ranks that came late (their first round
// matched its abandoned one) time out in the second instead of in the unbounded step.
void bounded_arrival(Communicator::Impl& c, const CallInfo& call);

// Bytes of any size from this rank to `peer` on comm (a u64 length, then chunks of at most
// 1 GiB, tag kBytesTag), each part under the deadline and policy: the plan-state file's
// gather to rank 0 and share-out from it. bounded_recv returns what the peer's send sent.
void bounded_send(Communicator::Impl& c, const CallInfo& call, MPI_Comm comm, int peer,
                  const std::vector<char>& bytes);
std::vector<char> bounded_recv(Communicator::Impl& c, const CallInfo& call, MPI_Comm comm,
                               int peer);

// Typed convenience: a vector of T in, the result out.
template <class T>
std::vector<T> bounded_of(Communicator::Impl& c, const CallInfo& call, const char* what,
                          const std::vector<T>& in,
                          const std::function<int(void* buf, MPI_Request* req)>& start) {
  std::vector<std::byte> bytes(in.size() * sizeof(T));
  if (!in.empty()) std::memcpy(bytes.data(), in.data(), bytes.size());
  bytes = bounded(c, call, what, std::move(bytes), start);
  std::vector<T> out(in.size());
  if (!out.empty()) std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

}  // namespace gradwire::detail
