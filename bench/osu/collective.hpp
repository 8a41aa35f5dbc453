// The osu-style collective sweep shared by gw_allreduce, gw_allgather, gw_reduce_scatter and
// gw_bcast: gradwire's call (dense, or a compressed gradwire::Plan per --codec) beside the
// plain engine collective, timed in the same run at the same size.
#pragma once

namespace gwbench {

enum class Coll { Allreduce, Allgather, ReduceScatter, Bcast };

// The whole program: MPI_Init .. MPI_Finalize. Returns the exit status (the same on every
// rank; an error on one rank aborts the job).
int run_collective(int argc, char** argv, Coll coll);

}  // namespace gwbench
