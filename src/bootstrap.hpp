// The rendezvous: every rank of a communicator arrives, or the ones that did not are named.
#pragma once

#include <mpi.h>

namespace gradwire::detail {

// Reserved on the caller's communicator during rendezvous only, fully matched before
// Communicator's constructor returns (the one place gradwire touches the caller's tags).
inline constexpr int kArrivalTag = 30031;

// Blocks until every rank of `comm` has called it, or throws Error(Timeout) naming the ranks
// that did not arrive within `timeout_s` (rank 0 knows which; the others learn it from
// rank 0, or report that rank 0 itself is missing).
void await_arrival(MPI_Comm comm, double timeout_s);

// The node layout: MPI_Comm_split_type(SHARED), or blocks of `ranks_per_node` consecutive
// ranks when that is > 0 (to act out several nodes on one host).
struct NodeLayout {
  MPI_Comm local = MPI_COMM_NULL;
  MPI_Comm leaders = MPI_COMM_NULL;
  int local_rank = 0, local_size = 1, node = 0, node_count = 1;
};
NodeLayout split_nodes(MPI_Comm comm, int ranks_per_node);

}  // namespace gradwire::detail
