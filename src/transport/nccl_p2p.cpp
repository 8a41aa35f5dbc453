#include "transport/nccl_p2p.hpp"

#include <cuda_runtime.h>
#include <nccl.h>

#include <string>

#include "transport/nccl_calls.hpp"

namespace gradwire::detail {
namespace {

ncclDataType_t nccl_type(coll::Elem t) {
  switch (t) {
    case coll::Elem::F32: return ncclFloat32;
    case coll::Elem::F16: return ncclFloat16;
    case coll::Elem::BF16: return ncclBfloat16;
    case coll::Elem::U64: return ncclUint64;
    case coll::Elem::Byte: return ncclUint8;
  }
  return ncclUint8;
}

ncclComm_t as_comm(void* c) { return static_cast<ncclComm_t>(c); }
cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

}  // namespace

NcclTransport::NcclTransport(void* nccl_comm, double timeout_s, const CallInfo& call)
    : comm_(nccl_comm), timeout_s_(timeout_s), call_(call) {
  if (!comm_) fail(ErrorCode::Internal, "NCCL transport without a communicator");
  if (ncclCommUserRank(as_comm(comm_), &rank_) != ncclSuccess ||
      ncclCommCount(as_comm(comm_), &size_) != ncclSuccess)
    fail(ErrorCode::Nccl, "ncclCommUserRank/ncclCommCount failed");
  cudaEvent_t e = nullptr;
  if (cudaEventCreateWithFlags(&e, cudaEventDisableTiming) != cudaSuccess) {
    cudaGetLastError();
    fail(ErrorCode::Cuda, "cudaEventCreate failed");
  }
  event_ = e;
}

NcclTransport::~NcclTransport() {
  close_groups();
  nccl::close(as_comm(comm_), timeout_s_);
  if (event_) cudaEventDestroy(static_cast<cudaEvent_t>(event_));
}

void NcclTransport::close_groups() noexcept {
  for (; depth_ > 0; --depth_) (void)ncclGroupEnd();
}

void NcclTransport::abort() noexcept {
  close_groups();  // first: an abort inside an open group would be deferred into it
  if (comm_) ncclCommAbort(as_comm(comm_));
  comm_ = nullptr;
}

// Every failure ends this communicator: a half-posted batch or a call left in progress
// would desynchronise it from the peers' (and NCCL refuses the next call on it anyway).
void NcclTransport::fail(ErrorCode code, const std::string& cause) {
  const std::string what =
      comm_ ? cause + "; the plan's NCCL communicator was aborted" : cause;
  abort();
  throw Error(code, message(rank_, size_, call_, what));
}

void* NcclTransport::comm() {
  if (!comm_) {
    fail(ErrorCode::Nccl,
         "the plan's NCCL communicator was aborted after an earlier failure; make a new plan");
  }
  return comm_;
}

int NcclTransport::enqueued(int rc, const char* what) {
  if (rc == ncclInProgress) {
    // Non-blocking communicator: it must leave ncclInProgress before its next call.
    rc = nccl::settle(as_comm(comm_), timeout_s_);
    if (rc == ncclInProgress) {
      fail(ErrorCode::Timeout, std::string(what) + " still in progress after " +
                                   std::to_string(timeout_s_) + " s (GRADWIRE_TIMEOUT)");
    }
  }
  if (rc != ncclSuccess)
    fail(ErrorCode::Nccl, nccl::describe(as_comm(comm_), static_cast<ncclResult_t>(rc), what));
  if (depth_ == 0 &&
      cudaEventRecord(static_cast<cudaEvent_t>(event_), as_stream(stream_)) != cudaSuccess) {
    cudaGetLastError();
    fail(ErrorCode::Cuda, "cudaEventRecord failed");
  }
  reported_ = false;
  return posted_++;
}

void NcclTransport::group_start() {
  comm();
  const ncclResult_t r = ncclGroupStart();
  if (r != ncclSuccess) fail(ErrorCode::Nccl, nccl::describe(nullptr, r, "ncclGroupStart"));
  ++depth_;
}

void NcclTransport::group_end() {
  if (depth_ == 0) fail(ErrorCode::Internal, "NCCL transport: group_end without group_start");
  --depth_;
  enqueued(ncclGroupEnd(), "ncclGroupEnd");
  --posted_;  // the group is not an operation of its own
}

void NcclTransport::abandon_group() noexcept {
  if (depth_ > 0) abort();  // the batch is incomplete: the peers' halves would never match
}

// NCCL matches point-to-point operations by order per peer, so tags are not needed.
int NcclTransport::isend(const void* buf, std::size_t bytes, int peer, int) {
  sent_bytes += bytes;
  return enqueued(ncclSend(buf, bytes, ncclUint8, peer, as_comm(comm()), as_stream(stream_)),
                  "ncclSend");
}

int NcclTransport::irecv(void* buf, std::size_t bytes, int peer, int) {
  return enqueued(ncclRecv(buf, bytes, ncclUint8, peer, as_comm(comm()), as_stream(stream_)),
                  "ncclRecv");
}

int NcclTransport::iallreduce(void* buf, std::size_t count, coll::Elem t, coll::Reduce op) {
  // Counted at the ring's cost, as MpiTransport does, so wire_bytes compare across transports.
  if (size_ > 1) sent_bytes += 2 * (size_ - 1) * count * coll::elem_size(t) / size_;
  return enqueued(ncclAllReduce(buf, buf, count, nccl_type(t),
                                op == coll::Reduce::Sum ? ncclSum : ncclMax, as_comm(comm()),
                                as_stream(stream_)),
                  "ncclAllReduce");
}

int NcclTransport::iallgather(const void* send, void* recv, std::size_t bytes) {
  sent_bytes += (size_ - 1) * bytes;
  const void* src = send ? send : static_cast<const char*>(recv) + bytes * static_cast<std::size_t>(rank_);
  return enqueued(ncclAllGather(src, recv, bytes, ncclUint8, as_comm(comm()), as_stream(stream_)),
                  "ncclAllGather");
}

// NCCL has no allgatherv: one grouped send to and receive from every peer. The own block is
// copied first, outside the group: only posts go inside it.
int NcclTransport::iallgatherv(const void* send, std::size_t bytes, void* recv, const int* counts,
                               const int* displs) {
  comm();
  if (cudaMemcpyAsync(static_cast<char*>(recv) + displs[rank_], send, bytes,
                      cudaMemcpyDeviceToDevice, as_stream(stream_)) != cudaSuccess) {
    cudaGetLastError();
    fail(ErrorCode::Cuda, "cudaMemcpyAsync failed");
  }
  coll::Batch batch(*this);
  for (int r = 0; r < size_; ++r) {
    if (r == rank_) continue;
    isend(send, bytes, r, 0);
    irecv(static_cast<char*>(recv) + displs[r], static_cast<std::size_t>(counts[r]), r, 0);
  }
  batch.end();
  return posted_ - 1;
}

int NcclTransport::ireduce(const void* send, void* recv, std::size_t count, coll::Elem t, int root) {
  if (rank_ != root) sent_bytes += count * coll::elem_size(t);
  return enqueued(ncclReduce(send, recv, count, nccl_type(t), ncclSum, root, as_comm(comm()),
                             as_stream(stream_)),
                  "ncclReduce");
}

int NcclTransport::ibcast(void* buf, std::size_t bytes, int root) {
  if (rank_ == root) sent_bytes += (size_ - 1) * bytes;
  return enqueued(ncclBroadcast(buf, buf, bytes, ncclUint8, root, as_comm(comm()),
                                as_stream(stream_)),
                  "ncclBroadcast");
}

// Stream order completes operations in posting order: one event marks them all. NCCL's own
// asynchronous errors (a peer gone, a network failure) are read too, or a kernel that never
// finishes would look like a slow one until the deadline.
int NcclTransport::test_some(int* done) {
  if (posted_ == 0 || reported_) return -1;
  const cudaError_t rc = cudaEventQuery(static_cast<cudaEvent_t>(event_));
  if (rc == cudaErrorNotReady) {
    ncclResult_t async = ncclSuccess;
    if (comm_ && ncclCommGetAsyncError(as_comm(comm_), &async) == ncclSuccess &&
        async != ncclSuccess && async != ncclInProgress)
      fail(ErrorCode::Nccl, nccl::describe(as_comm(comm_), async, "NCCL (asynchronous)"));
    return 0;
  }
  if (rc != cudaSuccess) {
    cudaGetLastError();
    fail(ErrorCode::Cuda, std::string("cudaEventQuery failed: ") + cudaGetErrorString(rc));
  }
  for (int i = 0; i < posted_; ++i) done[i] = i;
  reported_ = true;
  return posted_;
}

void NcclTransport::reset() {
  posted_ = 0;
  reported_ = false;
}

}  // namespace gradwire::detail
