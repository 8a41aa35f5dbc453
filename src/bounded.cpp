#include "bounded.hpp"

#include "request_state.hpp"

namespace gradwire::detail {

std::vector<std::byte> bounded(Communicator::Impl& c, const CallInfo& call, const char* what,
                               std::vector<std::byte> data,
                               const std::function<int(void* buf, MPI_Request* req)>& start) {
  auto st = std::make_unique<Request::State>();
  // Non-owning: the caller holds the communicator for the duration of the call.
  st->comm = std::shared_ptr<Communicator::Impl>(std::shared_ptr<Communicator::Impl>(), &c);
  st->call = call;
  st->temp = std::move(data);
  st->mpi.resize(1, MPI_REQUEST_NULL);
  const int rc = start(st->temp.data(), &st->mpi[0]);
  if (rc != MPI_SUCCESS) {
    st->done = true;
    c.check_mpi(rc, call, what);
  }
  try {
    st->wait(c.policy);
  } catch (...) {
    c.orphan(std::move(st));
    throw;
  }
  return std::move(st->temp);
}

void bounded_arrival(Communicator::Impl& c, const CallInfo& call) {
  const MPI_Comm comm = c.comm;
  for (int round = 0; round < 2; ++round) {
    bounded(c, call, "MPI_Ibarrier", {},
            [comm](void*, MPI_Request* r) { return MPI_Ibarrier(comm, r); });
  }
}

}  // namespace gradwire::detail
