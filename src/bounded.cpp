#include "bounded.hpp"

#include <algorithm>
#include <cstdint>

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

namespace {
constexpr int kBytesTag = 30041;  // on a plan's own communicator, where no run is in flight
constexpr std::size_t kChunk = std::size_t{1} << 30;
}  // namespace

void bounded_send(Communicator::Impl& c, const CallInfo& call, MPI_Comm comm, int peer,
                  const std::vector<char>& bytes) {
  const std::uint64_t n = bytes.size();
  std::vector<std::byte> part(sizeof n);
  std::memcpy(part.data(), &n, sizeof n);
  for (std::size_t at = 0;;) {
    const std::size_t len = part.size();
    bounded(c, call, "MPI_Isend", std::move(part), [comm, peer, len](void* b, MPI_Request* r) {
      return MPI_Isend(b, static_cast<int>(len), MPI_BYTE, peer, kBytesTag, comm, r);
    });
    if (at >= bytes.size()) return;
    const std::size_t k = std::min(kChunk, bytes.size() - at);
    part.resize(k);
    std::memcpy(part.data(), bytes.data() + at, k);
    at += k;
  }
}

std::vector<char> bounded_recv(Communicator::Impl& c, const CallInfo& call, MPI_Comm comm,
                               int peer) {
  auto recv = [&](std::size_t len) {
    return bounded(c, call, "MPI_Irecv", std::vector<std::byte>(len),
                   [comm, peer, len](void* b, MPI_Request* r) {
                     return MPI_Irecv(b, static_cast<int>(len), MPI_BYTE, peer, kBytesTag, comm,
                                      r);
                   });
  };
  std::uint64_t n = 0;
  const std::vector<std::byte> head = recv(sizeof n);
  std::memcpy(&n, head.data(), sizeof n);
  std::vector<char> out(n);
  for (std::size_t at = 0; at < out.size();) {
    const std::size_t k = std::min(kChunk, out.size() - at);
    const std::vector<std::byte> part = recv(k);
    std::memcpy(out.data() + at, part.data(), k);
    at += k;
  }
  return out;
}

}  // namespace gradwire::detail
