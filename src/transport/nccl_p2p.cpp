#include "transport/nccl_p2p.hpp"

#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <string>

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

}  // namespace

NcclTransport::NcclTransport(void* nccl_comm, void* stream, int /*max_ops*/,
                             const Communicator::Impl& c, const CallInfo& call)
    : comm_(nccl_comm), stream_(stream), c_(c), call_(call) {
  auto* comm = static_cast<ncclComm_t>(comm_);
  if (ncclCommUserRank(comm, &rank_) != ncclSuccess || ncclCommCount(comm, &size_) != ncclSuccess)
    c_.fail(ErrorCode::Nccl, call_, "ncclCommUserRank/ncclCommCount failed");
  cudaEvent_t e = nullptr;
  if (cudaEventCreateWithFlags(&e, cudaEventDisableTiming) != cudaSuccess)
    c_.fail(ErrorCode::Cuda, call_, "cudaEventCreate failed");
  event_ = e;
}

NcclTransport::~NcclTransport() {
  if (event_) cudaEventDestroy(static_cast<cudaEvent_t>(event_));
}

int NcclTransport::enqueued(int rc, const char* what) {
  if (rc == ncclInProgress) {
    // Non-blocking communicator: wait (bounded) until the call has left ncclInProgress.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(c_.timeout_s);
    ncclResult_t state = ncclInProgress;
    while (state == ncclInProgress) {
      if (ncclCommGetAsyncError(static_cast<ncclComm_t>(comm_), &state) != ncclSuccess) break;
      if (state == ncclInProgress && std::chrono::steady_clock::now() > deadline)
        c_.fail(ErrorCode::Timeout, call_, std::string(what) + " still in progress at the deadline");
    }
    rc = state;
  }
  if (rc != ncclSuccess) {
    c_.fail(ErrorCode::Nccl, call_,
            std::string(what) + " failed: " + ncclGetErrorString(static_cast<ncclResult_t>(rc)));
  }
  if (depth_ == 0 &&
      cudaEventRecord(static_cast<cudaEvent_t>(event_), static_cast<cudaStream_t>(stream_)) != cudaSuccess)
    c_.fail(ErrorCode::Cuda, call_, "cudaEventRecord failed");
  reported_ = false;
  return posted_++;
}

void NcclTransport::group_start() {
  ++depth_;
  if (ncclGroupStart() != ncclSuccess) c_.fail(ErrorCode::Nccl, call_, "ncclGroupStart failed");
}

void NcclTransport::group_end() {
  --depth_;
  enqueued(ncclGroupEnd(), "ncclGroupEnd");
  --posted_;  // the group is not an operation of its own
}

// NCCL matches point-to-point operations by order per peer, so tags are not needed.
int NcclTransport::isend(const void* buf, std::size_t bytes, int peer, int) {
  sent_bytes += bytes;
  return enqueued(ncclSend(buf, bytes, ncclUint8, peer, static_cast<ncclComm_t>(comm_),
                           static_cast<cudaStream_t>(stream_)),
                  "ncclSend");
}

int NcclTransport::irecv(void* buf, std::size_t bytes, int peer, int) {
  return enqueued(ncclRecv(buf, bytes, ncclUint8, peer, static_cast<ncclComm_t>(comm_),
                           static_cast<cudaStream_t>(stream_)),
                  "ncclRecv");
}

int NcclTransport::iallreduce(void* buf, std::size_t count, coll::Elem t, coll::Reduce op) {
  // Counted at the ring's cost, as MpiTransport does, so wire_bytes compare across transports.
  if (size_ > 1) sent_bytes += 2 * (size_ - 1) * count * coll::elem_size(t) / size_;
  return enqueued(ncclAllReduce(buf, buf, count, nccl_type(t), op == coll::Reduce::Sum ? ncclSum : ncclMax,
                                static_cast<ncclComm_t>(comm_), static_cast<cudaStream_t>(stream_)),
                  "ncclAllReduce");
}

int NcclTransport::iallgather(const void* send, void* recv, std::size_t bytes) {
  sent_bytes += (size_ - 1) * bytes;
  const void* src = send ? send : static_cast<const char*>(recv) + bytes * static_cast<std::size_t>(rank_);
  return enqueued(ncclAllGather(src, recv, bytes, ncclUint8, static_cast<ncclComm_t>(comm_),
                                static_cast<cudaStream_t>(stream_)),
                  "ncclAllGather");
}

// NCCL has no allgatherv: one grouped send to and receive from every peer.
int NcclTransport::iallgatherv(const void* send, std::size_t bytes, void* recv, const int* counts,
                               const int* displs) {
  group_start();
  for (int r = 0; r < size_; ++r) {
    char* dst = static_cast<char*>(recv) + displs[r];
    if (r == rank_) {
      if (cudaMemcpyAsync(dst, send, bytes, cudaMemcpyDeviceToDevice,
                          static_cast<cudaStream_t>(stream_)) != cudaSuccess)
        c_.fail(ErrorCode::Cuda, call_, "cudaMemcpyAsync failed");
      continue;
    }
    isend(send, bytes, r, 0);
    irecv(dst, static_cast<std::size_t>(counts[r]), r, 0);
  }
  group_end();
  return posted_ - 1;
}

int NcclTransport::ireduce(const void* send, void* recv, std::size_t count, coll::Elem t, int root) {
  if (rank_ != root) sent_bytes += count * coll::elem_size(t);
  return enqueued(ncclReduce(send, recv, count, nccl_type(t), ncclSum, root,
                             static_cast<ncclComm_t>(comm_), static_cast<cudaStream_t>(stream_)),
                  "ncclReduce");
}

int NcclTransport::ibcast(void* buf, std::size_t bytes, int root) {
  if (rank_ == root) sent_bytes += (size_ - 1) * bytes;
  return enqueued(ncclBroadcast(buf, buf, bytes, ncclUint8, root, static_cast<ncclComm_t>(comm_),
                                static_cast<cudaStream_t>(stream_)),
                  "ncclBroadcast");
}

// Stream order completes operations in posting order: one event marks them all.
int NcclTransport::test_some(int* done) {
  if (posted_ == 0 || reported_) return -1;
  const cudaError_t rc = cudaEventQuery(static_cast<cudaEvent_t>(event_));
  if (rc == cudaErrorNotReady) return 0;
  if (rc != cudaSuccess) c_.fail(ErrorCode::Cuda, call_, "cudaEventQuery failed");
  for (int i = 0; i < posted_; ++i) done[i] = i;
  reported_ = true;
  return posted_;
}

void NcclTransport::reset() {
  posted_ = 0;
  reported_ = false;
}

}  // namespace gradwire::detail
