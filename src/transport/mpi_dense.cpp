#include "transport/mpi_dense.hpp"

#include <climits>
#include <cstring>
#include <utility>

#include "transport/element_ops.hpp"
#include "transport/mpi_types.hpp"

namespace gradwire::detail {
namespace {

// What one MPI call needs, and what to do once it has completed.
struct Prepared {
  const void* send = nullptr;
  void* recv = nullptr;
  int count = 0;
  MPI_Datatype type = MPI_DATATYPE_NULL;
  MPI_Op op = MPI_OP_NULL;
  std::vector<std::byte> temp, temp2;
  std::function<void()> finish;
};

bool is16(DType t) { return t == DType::Float16 || t == DType::BFloat16; }
bool widens(DType t) { return t == DType::Int32 || t == DType::UInt8; }

// Blocking calls under the abort policy use MPI's blocking collective (MPI's fastest path),
// guarded by the watchdog. Everything else posts the non-blocking form and polls it against
// the deadline, so a timeout can come back as an error.
template <class Blocking, class Start>
StatePtr run(const ImplPtr& c, const CallInfo& call, Prepared&& p, bool blocking,
             const char* fn, Blocking&& block, Start&& start) {
  if (blocking && c->policy == OnTimeout::Abort) {
    {
      Armed guard(c->watch, c->timeout_s, call);
      c->check_mpi(block(p), call, fn);
    }
    if (p.finish) p.finish();
    return nullptr;
  }
  auto st = std::make_unique<Request::State>();
  st->comm = c;
  st->call = call;
  st->temp = std::move(p.temp);  // moving a vector keeps its buffer, so p's pointers hold
  st->temp2 = std::move(p.temp2);
  st->finish = std::move(p.finish);
  st->mpi.resize(1, MPI_REQUEST_NULL);
  const int rc = start(p, &st->mpi[0]);
  if (rc != MPI_SUCCESS) {
    st->done = true;
    c->check_mpi(rc, call, fn);
  }
  if (!blocking) return st;
  try {
    st->wait(c->policy);
  } catch (...) {
    c->orphan(std::move(st));  // still posted: keep its buffers alive
    throw;
  }
  return nullptr;
}

void* at(const void* base, std::size_t elems, std::size_t esz) {
  return const_cast<unsigned char*>(static_cast<const unsigned char*>(base)) + elems * esz;
}

}  // namespace

StatePtr mpi_allreduce(const ImplPtr& c, const CallInfo& call, const void* send, void* recv,
                       std::size_t count, DType t, ReduceOp op, bool blocking) {
  const int n = c->size;
  Prepared p;
  p.count = static_cast<int>(count);
  p.send = send == recv ? MPI_IN_PLACE : send;
  p.recv = recv;
  p.type = mpi_reduce_type(t);
  if (op != ReduceOp::Avg) {
    p.op = mpi_op(t, op);
  } else if (is16(t)) {
    // Pre-divide so that no partial sum can overflow the 16-bit range.
    p.temp.resize(count * 2);
    predivide16(send, p.temp.data(), count, t, n);
    p.send = p.temp.data();
    p.op = mpi_op(t, ReduceOp::Sum);
  } else if (widens(t)) {
    // Sum in int64 so that an int32/uint8 average cannot overflow on the way.
    p.temp.resize(count * sizeof(std::int64_t));
    auto* wide = reinterpret_cast<std::int64_t*>(p.temp.data());
    widen_to_i64(send, wide, count, t);
    p.send = MPI_IN_PLACE;
    p.recv = wide;
    p.type = MPI_INT64_T;
    p.op = MPI_SUM;
    p.finish = [wide, recv, count, t, n] { narrow_divided(wide, recv, count, t, n); };
  } else {
    p.op = MPI_SUM;
    p.finish = [recv, count, t, n] { divide_in_place(recv, count, t, n); };
  }
  MPI_Comm comm = c->comm;
  return run(
      c, call, std::move(p), blocking, "MPI_Allreduce",
      [comm](Prepared& q) { return MPI_Allreduce(q.send, q.recv, q.count, q.type, q.op, comm); },
      [comm](Prepared& q, MPI_Request* r) {
        return MPI_Iallreduce(q.send, q.recv, q.count, q.type, q.op, comm, r);
      });
}

StatePtr mpi_reduce_scatter(const ImplPtr& c, const CallInfo& call, const void* send,
                            void* recv, std::size_t recv_count, DType t, ReduceOp op,
                            bool blocking) {
  const int n = c->size;
  const std::size_t esz = dtype_size(t);
  const std::size_t total = recv_count * static_cast<std::size_t>(n);
  const bool in_place = recv == at(send, static_cast<std::size_t>(c->rank) * recv_count, esz);
  Prepared p;
  p.count = static_cast<int>(recv_count);
  p.send = send;
  p.recv = recv;
  p.type = mpi_reduce_type(t);
  p.op = mpi_op(t, op == ReduceOp::Avg ? ReduceOp::Sum : op);
  if (op == ReduceOp::Avg && is16(t)) {
    p.temp.resize(total * 2);
    predivide16(send, p.temp.data(), total, t, n);
    p.send = p.temp.data();
  } else if (op == ReduceOp::Avg && widens(t)) {
    p.temp.resize(total * sizeof(std::int64_t));
    p.temp2.resize(recv_count * sizeof(std::int64_t));
    widen_to_i64(send, reinterpret_cast<std::int64_t*>(p.temp.data()), total, t);
    auto* wide = reinterpret_cast<std::int64_t*>(p.temp2.data());
    p.send = p.temp.data();
    p.recv = wide;
    p.type = MPI_INT64_T;
    p.op = MPI_SUM;
    p.finish = [wide, recv, recv_count, t, n] { narrow_divided(wide, recv, recv_count, t, n); };
  } else {
    if (in_place) {
      // MPI's in-place form leaves the result at the start of the buffer; ours is at the
      // rank's own block (NCCL's convention), so move it there.
      p.send = MPI_IN_PLACE;
      p.recv = const_cast<void*>(send);
    }
    const bool divide = op == ReduceOp::Avg;
    if (in_place || divide) {
      p.finish = [send, recv, recv_count, esz, t, n, in_place, divide] {
        if (in_place) std::memmove(recv, send, recv_count * esz);
        if (divide) divide_in_place(recv, recv_count, t, n);
      };
    }
  }
  MPI_Comm comm = c->comm;
  return run(
      c, call, std::move(p), blocking, "MPI_Reduce_scatter_block",
      [comm](Prepared& q) {
        return MPI_Reduce_scatter_block(q.send, q.recv, q.count, q.type, q.op, comm);
      },
      [comm](Prepared& q, MPI_Request* r) {
        return MPI_Ireduce_scatter_block(q.send, q.recv, q.count, q.type, q.op, comm, r);
      });
}

StatePtr mpi_allgather(const ImplPtr& c, const CallInfo& call, const void* send, void* recv,
                       std::size_t count, DType t, bool blocking) {
  Prepared p;
  const bool in_place = send == at(recv, static_cast<std::size_t>(c->rank) * count, dtype_size(t));
  p.send = in_place ? MPI_IN_PLACE : send;
  p.recv = recv;
  p.count = static_cast<int>(count);
  p.type = mpi_move_type(t);
  MPI_Comm comm = c->comm;
  return run(
      c, call, std::move(p), blocking, "MPI_Allgather",
      [comm](Prepared& q) {
        return MPI_Allgather(q.send, q.count, q.type, q.recv, q.count, q.type, comm);
      },
      [comm](Prepared& q, MPI_Request* r) {
        return MPI_Iallgather(q.send, q.count, q.type, q.recv, q.count, q.type, comm, r);
      });
}

StatePtr mpi_broadcast(const ImplPtr& c, const CallInfo& call, void* buf, std::size_t count,
                       DType t, int root, bool blocking) {
  Prepared p;
  p.recv = buf;
  p.count = static_cast<int>(count);
  p.type = mpi_move_type(t);
  MPI_Comm comm = c->comm;
  return run(
      c, call, std::move(p), blocking, "MPI_Bcast",
      [comm, root](Prepared& q) { return MPI_Bcast(q.recv, q.count, q.type, root, comm); },
      [comm, root](Prepared& q, MPI_Request* r) {
        return MPI_Ibcast(q.recv, q.count, q.type, root, comm, r);
      });
}

}  // namespace gradwire::detail
