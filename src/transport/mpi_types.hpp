// gradwire's dtypes and ops as MPI sees them. MPI has no 16-bit float type, so float16 and
// bfloat16 get a named 2-byte datatype and user-defined ops that accumulate each pair in
// float32 and round the result to nearest even (docs/collectives.md).
#pragma once

#include <mpi.h>

#include "gradwire/types.hpp"

namespace gradwire::detail {

// For reductions: the 16-bit floats map to gradwire's own datatypes.
MPI_Datatype mpi_reduce_type(DType t);
// For data movement only (gather, broadcast): any type of the right size.
MPI_Datatype mpi_move_type(DType t);
// Sum, Min, Max, and Prod except on 16-bit floats; Avg is built from Sum by the caller.
MPI_Op mpi_op(DType t, ReduceOp op);

}  // namespace gradwire::detail
