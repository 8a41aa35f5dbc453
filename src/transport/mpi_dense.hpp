// Dense collectives on host memory, delegated to MPI's own collectives (the engine that
// already does them best). gradwire adds avg, 16-bit floats, in-place forms and deadlines.
#pragma once

#include <cstddef>
#include <memory>

#include "request_state.hpp"

namespace gradwire::detail {

using StatePtr = std::unique_ptr<Request::State>;
using ImplPtr = std::shared_ptr<Communicator::Impl>;

// Each one, with `blocking`, completes the collective and returns null; without, starts it
// and returns the state of a Request. Arguments are validated by the caller.
StatePtr mpi_allreduce(const ImplPtr& c, const CallInfo& call, const void* send, void* recv,
                       std::size_t count, DType t, ReduceOp op, bool blocking);
StatePtr mpi_allgather(const ImplPtr& c, const CallInfo& call, const void* send, void* recv,
                       std::size_t count, DType t, bool blocking);
StatePtr mpi_reduce_scatter(const ImplPtr& c, const CallInfo& call, const void* send,
                            void* recv, std::size_t recv_count, DType t, ReduceOp op,
                            bool blocking);
StatePtr mpi_broadcast(const ImplPtr& c, const CallInfo& call, void* buf, std::size_t count,
                       DType t, int root, bool blocking);

}  // namespace gradwire::detail
