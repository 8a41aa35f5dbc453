// A bound on this process's MPI_Finalize, for when its MPI state is known to be damaged: after
// a merge abandoned on a thread that still spins inside Open MPI (fault/elastic.cpp), Open MPI
// 5.0's MPI_Finalize crashed or never returned in some runs (docs/fault-tolerance.md).
#pragma once

namespace gradwire::detail {

// From the start of MPI_Finalize, limit_s seconds; past them with MPI still not finalized, the
// process says why on stderr and exits with status 1. Once per process: the first limit stays.
// Needs MPI initialized (it hangs an attribute on MPI_COMM_SELF).
void bound_finalize(double limit_s);

}  // namespace gradwire::detail
