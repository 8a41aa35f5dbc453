#include "transport/mpi_p2p.hpp"

#include <climits>
#include <string>

#include "request_state.hpp"
#include "timeline.hpp"
#include "transport/mpi_types.hpp"

namespace gradwire::detail {
namespace {

MPI_Datatype type_of(coll::Elem t) {
  switch (t) {
    case coll::Elem::F32: return MPI_FLOAT;
    case coll::Elem::F16: return mpi_reduce_type(DType::Float16);
    case coll::Elem::BF16: return mpi_reduce_type(DType::BFloat16);
    case coll::Elem::U64: return MPI_UINT64_T;
    case coll::Elem::Byte: return MPI_BYTE;
  }
  return MPI_BYTE;
}

MPI_Op op_of(coll::Elem t, coll::Reduce op) {
  const ReduceOp r = op == coll::Reduce::Sum ? ReduceOp::Sum : ReduceOp::Max;
  if (t == coll::Elem::F16) return mpi_op(DType::Float16, r);
  if (t == coll::Elem::BF16) return mpi_op(DType::BFloat16, r);
  return op == coll::Reduce::Sum ? MPI_SUM : MPI_MAX;
}

}  // namespace

MpiTransport::MpiTransport(MPI_Comm comm, int max_ops, const Communicator::Impl& c,
                           const CallInfo& call)
    : comm_(comm), max_ops_(static_cast<std::size_t>(max_ops)), c_(c), call_(call) {
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
  reqs_.reserve(max_ops_);
  indices_.resize(max_ops_);
  if (timeline::Recorder* r = timeline::active()) {
    marks_.resize(max_ops_);
    for (int p = 0; p < size_; ++p) {
      to_.push_back(r->intern("send to " + std::to_string(p)));
      from_.push_back(r->intern("recv from " + std::to_string(p)));
    }
  }
}

namespace {
const char* named(const std::vector<const char*>& names, int peer) {
  return peer >= 0 && static_cast<std::size_t>(peer) < names.size()
             ? names[static_cast<std::size_t>(peer)]
             : "";
}
}  // namespace

void MpiTransport::mark(const char* name, std::uint64_t bytes, int peer) noexcept {
  if (marks_.empty() || !timeline::active()) return;
  marks_[reqs_.size() - 1] = {timeline::now_ns(), name, bytes, peer};
}

MPI_Request* MpiTransport::next(const char* what) {
  if (reqs_.size() >= max_ops_) {
    c_.fail(ErrorCode::Internal, call_,
            std::string(what) + ": more operations in one stage than the plan reserved");
  }
  reqs_.push_back(MPI_REQUEST_NULL);  // within the reserved capacity: no allocation
  return &reqs_.back();
}

int MpiTransport::post(int rc, const char* what) {
  if (rc != MPI_SUCCESS) {
    reqs_.back() = MPI_REQUEST_NULL;
    c_.check_mpi(rc, call_, what);
  }
  return static_cast<int>(reqs_.size()) - 1;
}

static int to_int(std::size_t n, const Communicator::Impl& c, const CallInfo& call) {
  if (n > static_cast<std::size_t>(INT_MAX)) {
    c.fail(ErrorCode::Unsupported, call,
           "a message of " + std::to_string(n) + " exceeds MPI's int count; split the buffer");
  }
  return static_cast<int>(n);
}

int MpiTransport::isend(const void* buf, std::size_t bytes, int peer, int tag) {
  MPI_Request* r = next("MPI_Isend");
  sent_bytes += bytes;
  mark(named(to_, peer), bytes, peer);
  return post(MPI_Isend(buf, to_int(bytes, c_, call_), MPI_BYTE, peer, tag, comm_, r), "MPI_Isend");
}

int MpiTransport::irecv(void* buf, std::size_t bytes, int peer, int tag) {
  MPI_Request* r = next("MPI_Irecv");
  mark(named(from_, peer), bytes, peer);
  return post(MPI_Irecv(buf, to_int(bytes, c_, call_), MPI_BYTE, peer, tag, comm_, r), "MPI_Irecv");
}

int MpiTransport::iallreduce(void* buf, std::size_t count, coll::Elem t, coll::Reduce op) {
  MPI_Request* r = next("MPI_Iallreduce");
  mark("allreduce", count * coll::elem_size(t), -1);
  if (size_ > 1) sent_bytes += 2 * (size_ - 1) * count * coll::elem_size(t) / size_;
  return post(MPI_Iallreduce(MPI_IN_PLACE, buf, to_int(count, c_, call_), type_of(t),
                             op_of(t, op), comm_, r),
              "MPI_Iallreduce");
}

int MpiTransport::iallgather(const void* send, void* recv, std::size_t bytes) {
  MPI_Request* r = next("MPI_Iallgather");
  mark("allgather", bytes, -1);
  sent_bytes += (size_ - 1) * bytes;
  const int n = to_int(bytes, c_, call_);
  // send == nullptr: in place (the own block already sits in recv).
  return post(MPI_Iallgather(send ? send : MPI_IN_PLACE, send ? n : 0, MPI_BYTE, recv, n, MPI_BYTE,
                             comm_, r),
              "MPI_Iallgather");
}

int MpiTransport::iallgatherv(const void* send, std::size_t bytes, void* recv, const int* counts,
                              const int* displs) {
  MPI_Request* r = next("MPI_Iallgatherv");
  mark("allgatherv", bytes, -1);
  sent_bytes += (size_ - 1) * bytes;
  return post(MPI_Iallgatherv(send, to_int(bytes, c_, call_), MPI_BYTE, recv, counts, displs,
                              MPI_BYTE, comm_, r),
              "MPI_Iallgatherv");
}

int MpiTransport::ireduce(const void* send, void* recv, std::size_t count, coll::Elem t,
                          int root) {
  MPI_Request* r = next("MPI_Ireduce");
  mark("reduce", count * coll::elem_size(t), root);
  if (rank_ != root) sent_bytes += count * coll::elem_size(t);
  return post(MPI_Ireduce(send, recv, to_int(count, c_, call_), type_of(t),
                          op_of(t, coll::Reduce::Sum), root, comm_, r),
              "MPI_Ireduce");
}

int MpiTransport::ibcast(void* buf, std::size_t bytes, int root) {
  MPI_Request* r = next("MPI_Ibcast");
  mark("bcast", bytes, root);
  if (rank_ == root) sent_bytes += (size_ - 1) * bytes;
  return post(MPI_Ibcast(buf, to_int(bytes, c_, call_), MPI_BYTE, root, comm_, r), "MPI_Ibcast");
}

int MpiTransport::test_some(int* done) {
  if (reqs_.empty()) return -1;
  int outcount = 0, rc = MPI_SUCCESS;
  {
    WorldErrorsReturn guard;  // Open MPI raises failed non-blocking collectives there
    rc = MPI_Testsome(static_cast<int>(reqs_.size()), reqs_.data(), &outcount, indices_.data(),
                      MPI_STATUSES_IGNORE);
  }
  c_.check_mpi(rc, call_, "MPI_Testsome");
  if (outcount == MPI_UNDEFINED) return -1;  // every request is MPI_REQUEST_NULL
  for (int i = 0; i < outcount; ++i) done[i] = indices_[static_cast<std::size_t>(i)];
  if (!marks_.empty()) {
    for (int i = 0; i < outcount; ++i) {
      Mark& m = marks_[static_cast<std::size_t>(done[i])];
      timeline::async_since(m.name, m.t0, m.bytes, m.peer);
      m.t0 = 0;
    }
  }
  return outcount;
}

void MpiTransport::reset() { reqs_.clear(); }

}  // namespace gradwire::detail
