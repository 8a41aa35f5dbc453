// The frame of every benchmark's main(): MPI up, the body, and one exit status on all ranks.
#pragma once

#include <mpi.h>

#include <cstdio>
#include <exception>

namespace gwbench {

// Runs body(rank, size) between MPI_Init and MPI_Finalize; returns the worst status of any
// rank. An exception on one rank may leave the others inside a collective, so it ends the
// whole job (MPI_Abort), which makes the exit status non-zero everywhere.
template <class Body>
int mpi_main(int argc, char** argv, const char* name, Body&& body) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  int status = 0;
  try {
    status = body(rank, size);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: rank %d: %s\n", name, rank, e.what());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  MPI_Allreduce(MPI_IN_PLACE, &status, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return status;
}

}  // namespace gwbench
