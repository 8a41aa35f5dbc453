#include "bootstrap.hpp"

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "gradwire/error.hpp"
#include "watchdog.hpp"

namespace gradwire::detail {
namespace {

constexpr int kListed = 64;  // missing ranks named in a verdict; the count is always exact

std::string list_ranks(const int* ranks, int n, int total_missing) {
  std::string s;
  for (int i = 0; i < n; ++i) s += (i ? ", " : "") + std::to_string(ranks[i]);
  if (total_missing > n) s += " and " + std::to_string(total_missing - n) + " more";
  return s;
}

[[noreturn]] void missing_error(int rank, int size, const int* verdict, double timeout_s) {
  const int missing = verdict[0];
  throw Error(ErrorCode::Timeout,
              "gradwire: rank " + std::to_string(rank) + " of " + std::to_string(size) +
                  ": rendezvous: " + std::to_string(missing) + " rank(s) did not arrive within " +
                  std::to_string(timeout_s) + " s (GRADWIRE_INIT_TIMEOUT): ranks " +
                  list_ranks(verdict + 1, missing < kListed ? missing : kListed, missing));
}

void pause_briefly(unsigned spins) {
  if (spins > 1000) std::this_thread::sleep_for(std::chrono::microseconds(50));
}

}  // namespace

void await_arrival(MPI_Comm comm, double timeout_s) {
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  if (size == 1) return;
  const auto to_ns = [](double s) { return timeout_ns(s); };
  const std::int64_t start = monotonic_ns();
  int verdict[kListed + 1] = {};

  if (rank == 0) {
    std::vector<MPI_Request> reqs(static_cast<std::size_t>(size - 1));
    std::vector<int> tokens(reqs.size());
    for (int r = 1; r < size; ++r)
      MPI_Irecv(&tokens[r - 1], 1, MPI_INT, r, kArrivalTag, comm, &reqs[r - 1]);
    std::vector<char> arrived(static_cast<std::size_t>(size), 0);
    arrived[0] = 1;
    int count = 1;
    for (unsigned spins = 0; count < size && monotonic_ns() - start < to_ns(timeout_s); ++spins) {
      for (int r = 1; r < size; ++r) {
        if (arrived[r]) continue;
        int flag = 0;
        MPI_Test(&reqs[r - 1], &flag, MPI_STATUS_IGNORE);
        if (flag) arrived[r] = 1, ++count;
      }
      pause_briefly(spins);
    }
    for (int r = 1; r < size; ++r) {
      if (arrived[r]) continue;
      if (verdict[0] < kListed) verdict[1 + verdict[0]] = r;
      ++verdict[0];
      MPI_Cancel(&reqs[r - 1]);
      MPI_Wait(&reqs[r - 1], MPI_STATUS_IGNORE);
    }
    // Everyone who came learns the verdict, so every rank reports the same missing ranks.
    for (int r = 1; r < size; ++r)
      if (arrived[r]) MPI_Send(verdict, kListed + 1, MPI_INT, r, kArrivalTag, comm);
    if (verdict[0] > 0) missing_error(rank, size, verdict, timeout_s);
    return;
  }

  int token = rank;
  MPI_Request reqs[2];
  MPI_Isend(&token, 1, MPI_INT, 0, kArrivalTag, comm, &reqs[0]);
  MPI_Irecv(verdict, kListed + 1, MPI_INT, 0, kArrivalTag, comm, &reqs[1]);
  // Rank 0 may itself arrive late and then wait its full timeout: allow for that.
  const std::int64_t limit = to_ns(2 * timeout_s + 1);
  int flag = 0;
  for (unsigned spins = 0; !flag && monotonic_ns() - start < limit; ++spins) {
    MPI_Testall(2, reqs, &flag, MPI_STATUSES_IGNORE);
    pause_briefly(spins);
  }
  if (!flag) {
    throw Error(ErrorCode::Timeout,
                "gradwire: rank " + std::to_string(rank) + " of " + std::to_string(size) +
                    ": rendezvous: rank 0 did not answer within " + std::to_string(2 * timeout_s + 1) +
                    " s: rank 0 did not arrive (GRADWIRE_INIT_TIMEOUT=" + std::to_string(timeout_s) +
                    " s)");
  }
  if (verdict[0] > 0) missing_error(rank, size, verdict, timeout_s);
}

NodeLayout split_nodes(MPI_Comm comm, int ranks_per_node) {
  NodeLayout n;
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  if (ranks_per_node > 0) {
    MPI_Comm_split(comm, rank / ranks_per_node, rank, &n.local);
  } else {
    MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &n.local);
  }
  MPI_Comm_rank(n.local, &n.local_rank);
  MPI_Comm_size(n.local, &n.local_size);
  MPI_Comm_split(comm, n.local_rank == 0 ? 0 : MPI_UNDEFINED, rank, &n.leaders);
  int node[2] = {0, 1};
  if (n.local_rank == 0) {
    MPI_Comm_rank(n.leaders, &node[0]);
    MPI_Comm_size(n.leaders, &node[1]);
  }
  MPI_Bcast(node, 2, MPI_INT, 0, n.local);
  n.node = node[0];
  n.node_count = node[1];
  return n;
}

}  // namespace gradwire::detail
