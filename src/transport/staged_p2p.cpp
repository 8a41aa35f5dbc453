#include "transport/staged_p2p.hpp"

#include <cuda_runtime.h>

#include <string>

namespace gradwire::detail {
namespace {

std::size_t elem_bytes(coll::Elem t) {
  switch (t) {
    case coll::Elem::F32: return 4;
    case coll::Elem::F16:
    case coll::Elem::BF16: return 2;
    case coll::Elem::U64: return 8;
    case coll::Elem::Byte: return 1;
  }
  return 1;
}

}  // namespace

StagedTransport::StagedTransport(MPI_Comm comm, int max_ops, bool cuda_aware,
                                 const Communicator::Impl& c, const CallInfo& call)
    : inner_(comm, max_ops, c, call), cuda_aware_(cuda_aware), c_(c), call_(call) {
  events_.resize(static_cast<std::size_t>(max_ops), nullptr);
  for (void*& e : events_) {
    cudaEvent_t ev = nullptr;
    if (cudaEventCreateWithFlags(&ev, cudaEventDisableTiming) != cudaSuccess) {
      cudaGetLastError();
      c_.fail(ErrorCode::Cuda, call_, "cudaEventCreate (staged transport) failed");
    }
    e = ev;
  }
  ops_.reserve(static_cast<std::size_t>(max_ops));
  inner_done_.resize(static_cast<std::size_t>(max_ops));
}

StagedTransport::~StagedTransport() {
  for (void* e : events_)
    if (e) cudaEventDestroy(static_cast<cudaEvent_t>(e));
  for (auto& m : mirrors_) cudaFreeHost(m.second.first);
  cudaGetLastError();
}

void* StagedTransport::mirror(const void* dev, std::size_t bytes) {
  if (cuda_aware_) return const_cast<void*>(dev);
  auto it = mirrors_.find(dev);
  if (it != mirrors_.end() && it->second.second >= bytes) return it->second.first;
  if (it != mirrors_.end()) {
    cudaFreeHost(it->second.first);
    mirrors_.erase(it);
  }
  void* p = nullptr;
  const cudaError_t e = cudaHostAlloc(&p, bytes ? bytes : 1, cudaHostAllocPortable);
  if (e != cudaSuccess) {
    cudaGetLastError();
    c_.fail(ErrorCode::Cuda, call_,
            "cudaHostAlloc of " + std::to_string(bytes) + " bytes (staged transport) failed: " +
                cudaGetErrorString(e));
  }
  mirrors_[dev] = {p, bytes};
  return p;
}

// Records the event that orders MPI after the device work (and the copy down) of this
// operation. A send of a buffer already copied down in this stage reuses that copy.
int StagedTransport::add(Op op, bool needs_event) {
  if (ops_.size() >= events_.size())
    c_.fail(ErrorCode::Internal, call_, "staged transport: more operations in one stage than reserved");
  const auto s = static_cast<cudaStream_t>(stream_);
  if (needs_event) {
    int reuse = -1;
    for (std::size_t i = 0; i < ops_.size() && reuse < 0; ++i)
      if (ops_[i].dev_in == op.dev_in && ops_[i].in_bytes >= op.in_bytes && ops_[i].event >= 0)
        reuse = ops_[i].event;
    if (reuse >= 0) {
      op.event = reuse;
    } else {
      if (!cuda_aware_ && op.in_bytes > 0) {
        if (cudaMemcpyAsync(op.host_in, op.dev_in, op.in_bytes, cudaMemcpyDeviceToHost, s) != cudaSuccess) {
          cudaGetLastError();
          c_.fail(ErrorCode::Cuda, call_, "cudaMemcpyAsync (device to pinned) failed");
        }
        pcie_bytes += op.in_bytes;
      }
      op.event = static_cast<int>(ops_.size());
      if (cudaEventRecord(static_cast<cudaEvent_t>(events_[static_cast<std::size_t>(op.event)]), s) != cudaSuccess) {
        cudaGetLastError();
        c_.fail(ErrorCode::Cuda, call_, "cudaEventRecord (staged transport) failed");
      }
    }
  }
  ops_.push_back(op);
  Op& o = ops_.back();
  if (!needs_event) post(o);  // a receive: nothing on the device to wait for
  return static_cast<int>(ops_.size()) - 1;
}

void StagedTransport::post(Op& op) {
  switch (op.kind) {
    case Kind::Send: op.inner = inner_.isend(op.host_in, op.in_bytes, op.peer, op.tag); break;
    case Kind::Recv: op.inner = inner_.irecv(op.host_out, op.out_bytes, op.peer, op.tag); break;
    case Kind::Allreduce: op.inner = inner_.iallreduce(op.host_out, op.count, op.elem, op.red); break;
    case Kind::Allgather: op.inner = inner_.iallgather(op.host_in, op.host_out, op.in_bytes); break;
  }
  op.posted = true;
  sent_bytes = inner_.sent_bytes;
}

int StagedTransport::isend(const void* buf, std::size_t bytes, int peer, int tag) {
  Op op{Kind::Send};
  op.dev_in = buf;
  op.in_bytes = bytes;
  op.host_in = mirror(buf, bytes);
  op.peer = peer;
  op.tag = tag;
  return add(op, true);
}

int StagedTransport::irecv(void* buf, std::size_t bytes, int peer, int tag) {
  Op op{Kind::Recv};
  op.dev_out = buf;
  op.out_bytes = bytes;
  op.host_out = mirror(buf, bytes);
  op.peer = peer;
  op.tag = tag;
  return add(op, false);
}

// In place: down, reduced on the host (or in device memory by a CUDA-aware MPI), up.
int StagedTransport::iallreduce(void* buf, std::size_t count, coll::Elem t, coll::Reduce red) {
  Op op{Kind::Allreduce};
  op.dev_in = buf;
  op.dev_out = buf;
  op.in_bytes = op.out_bytes = count * elem_bytes(t);
  op.host_in = op.host_out = mirror(buf, op.in_bytes);
  op.count = count;
  op.elem = t;
  op.red = red;
  return add(op, true);
}

int StagedTransport::iallgather(const void* send, void* recv, std::size_t bytes) {
  if (!send)
    c_.fail(ErrorCode::Internal, call_, "staged transport: in-place allgather is not staged");
  Op op{Kind::Allgather};
  op.dev_in = send;
  op.in_bytes = bytes;
  op.host_in = mirror(send, bytes);
  op.dev_out = recv;
  op.out_bytes = bytes * static_cast<std::size_t>(size());
  op.host_out = mirror(recv, op.out_bytes);
  return add(op, true);
}

// The device algorithms use only the operations above (registry: device-native entries).
int StagedTransport::iallgatherv(const void*, std::size_t, void*, const int*, const int*) {
  c_.fail(ErrorCode::Internal, call_, "staged transport: allgatherv is not staged");
}
int StagedTransport::ireduce(const void*, void*, std::size_t, coll::Elem, int) {
  c_.fail(ErrorCode::Internal, call_, "staged transport: reduce is not staged");
}
int StagedTransport::ibcast(void*, std::size_t, int) {
  c_.fail(ErrorCode::Internal, call_, "staged transport: bcast is not staged");
}

int StagedTransport::test_some(int* done) {
  const auto s = static_cast<cudaStream_t>(stream_);
  // Operations whose device data is ready go to MPI.
  for (Op& op : ops_) {
    if (op.posted) continue;
    const cudaError_t e = cudaEventQuery(static_cast<cudaEvent_t>(events_[static_cast<std::size_t>(op.event)]));
    if (e == cudaErrorNotReady) continue;
    if (e != cudaSuccess) {
      cudaGetLastError();
      c_.fail(ErrorCode::Cuda, call_, std::string("staged transport: ") + cudaGetErrorString(e));
    }
    post(op);
  }
  int n = 0;
  const int m = inner_.test_some(inner_done_.data());
  for (int i = 0; i < m; ++i) {
    for (std::size_t k = 0; k < ops_.size(); ++k) {
      Op& op = ops_[k];
      if (!op.posted || op.done || op.inner != inner_done_[static_cast<std::size_t>(i)]) continue;
      // Results go up on the stream: kernels enqueued after this report see them.
      if (!cuda_aware_ && op.dev_out && op.out_bytes > 0) {
        if (cudaMemcpyAsync(op.dev_out, op.host_out, op.out_bytes, cudaMemcpyHostToDevice, s) != cudaSuccess) {
          cudaGetLastError();
          c_.fail(ErrorCode::Cuda, call_, "cudaMemcpyAsync (pinned to device) failed");
        }
        pcie_bytes += op.out_bytes;
      }
      op.done = true;
      done[n++] = static_cast<int>(k);
    }
  }
  if (n > 0) return n;
  for (const Op& op : ops_)
    if (!op.done) return 0;
  return -1;
}

void StagedTransport::reset() {
  ops_.clear();
  inner_.reset();
}

}  // namespace gradwire::detail
