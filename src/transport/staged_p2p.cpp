#include "transport/staged_p2p.hpp"

#include <cuda_runtime.h>

#include <string>

namespace gradwire::detail {

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
  for (const Mirror& m : mirrors_) {
    cudaFreeHost(m.pinned);
    cudaEventDestroy(static_cast<cudaEvent_t>(m.up));
  }
  cudaGetLastError();
}

// A mirror is scratch: any one not used by an operation of this stage serves any buffer (the
// data is copied down or up on each use), so their number is the most a stage uses at once,
// not the number of distinct buffers a caller passes (a dense plan run on new buffers every
// step would otherwise pin one full-size mirror per buffer).
int StagedTransport::mirror(const void* dev, std::size_t bytes, const void* taken) {
  auto in_use = [&](const void* pinned) {
    if (pinned == taken) return true;  // the other side of the operation being made
    for (const Op& op : ops_)
      if (op.host_in == pinned || op.host_out == pinned) return true;
    return false;
  };
  for (std::size_t i = 0; i < mirrors_.size(); ++i)
    if (mirrors_[i].dev == dev && mirrors_[i].bytes >= bytes) return static_cast<int>(i);
  // An unused one is taken over (its pending copy up, if any, is awaited through its event
  // like any other before MPI writes into it; a copy down into it is stream-ordered after it).
  for (std::size_t i = 0; i < mirrors_.size(); ++i) {
    if (mirrors_[i].bytes >= bytes && !in_use(mirrors_[i].pinned)) {
      mirrors_[i].dev = dev;
      return static_cast<int>(i);
    }
  }
  Mirror m{dev, nullptr, bytes};
  cudaError_t e = cudaHostAlloc(&m.pinned, bytes ? bytes : 1, cudaHostAllocPortable);
  cudaEvent_t ev = nullptr;
  if (e == cudaSuccess) e = cudaEventCreateWithFlags(&ev, cudaEventDisableTiming);
  if (e != cudaSuccess) {
    cudaGetLastError();
    if (m.pinned) cudaFreeHost(m.pinned);
    c_.fail(ErrorCode::Cuda, call_,
            "cudaHostAlloc of " + std::to_string(bytes) + " bytes (staged transport) failed: " +
                cudaGetErrorString(e));
  }
  m.up = ev;
  mirrors_.push_back(m);
  return static_cast<int>(mirrors_.size()) - 1;
}

bool StagedTransport::ready(const Op& op) {
  auto passed = [&](void* ev) {
    const cudaError_t e = cudaEventQuery(static_cast<cudaEvent_t>(ev));
    if (e == cudaErrorNotReady) return false;
    if (e != cudaSuccess) {
      cudaGetLastError();
      c_.fail(ErrorCode::Cuda, call_, std::string("staged transport: ") + cudaGetErrorString(e));
    }
    return true;
  };
  if (op.event >= 0 && !passed(events_[static_cast<std::size_t>(op.event)])) return false;
  if (op.out_mirror >= 0) {
    const Mirror& m = mirrors_[static_cast<std::size_t>(op.out_mirror)];
    if (m.up_recorded && !passed(m.up)) return false;
  }
  return true;
}

// Records the event that orders MPI after the device work (and the copy down) of this
// operation. A send of a buffer already copied down in this stage reuses that copy.
int StagedTransport::add(Op op, bool needs_event) {
  if (ops_.size() >= events_.size())
    c_.fail(ErrorCode::Internal, call_, "staged transport: more operations in one stage than reserved");
  const auto s = static_cast<cudaStream_t>(stream_);
  if (needs_event) {
    int reuse = -1;
    for (std::size_t i = 0; i < ops_.size() && reuse < 0 && op.dev_in; ++i)
      if (ops_[i].dev_in == op.dev_in && ops_[i].in_bytes >= op.in_bytes && ops_[i].event >= 0 &&
          ops_[i].host_in == op.host_in)
        reuse = ops_[i].event;
    if (reuse >= 0) {
      op.event = reuse;
    } else {
      if (op.host_in != op.dev_in && op.in_bytes > 0) {  // staged: its bytes go down first
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
  if (ready(o)) post(o);  // else test_some posts it once ready
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

// Where MPI writes the result of op: the device buffer (CUDA-aware point-to-point) or a
// mirror. Open MPI takes device pointers in point-to-point and blocking collectives only,
// not in non-blocking ones (its FAQ, "Running CUDA-aware Open MPI"), so the collectives
// below are staged through mirrors even with a CUDA-aware MPI.
void StagedTransport::set_out(Op& op, void* dev, std::size_t bytes) {
  if (cuda_aware_ && (op.kind == Kind::Send || op.kind == Kind::Recv)) {
    op.host_out = dev;
    return;
  }
  op.out_mirror = mirror(dev, bytes, op.host_in);
  op.host_out = mirrors_[static_cast<std::size_t>(op.out_mirror)].pinned;
}

int StagedTransport::isend(const void* buf, std::size_t bytes, int peer, int tag) {
  Op op{Kind::Send};
  op.dev_in = buf;
  op.in_bytes = bytes;
  op.host_in = cuda_aware_ ? const_cast<void*>(buf) : mirrors_[static_cast<std::size_t>(mirror(buf, bytes))].pinned;
  op.peer = peer;
  op.tag = tag;
  return add(op, true);
}

int StagedTransport::irecv(void* buf, std::size_t bytes, int peer, int tag) {
  Op op{Kind::Recv};
  op.dev_out = buf;
  op.out_bytes = bytes;
  set_out(op, buf, bytes);
  op.peer = peer;
  op.tag = tag;
  // With device pointers, MPI must not write the buffer before the kernels enqueued before
  // this receive (which may still read it) have run: an event orders it after them.
  return add(op, cuda_aware_);
}

// In place: down, reduced on the host (or in device memory by a CUDA-aware MPI), up.
int StagedTransport::iallreduce(void* buf, std::size_t count, coll::Elem t, coll::Reduce red) {
  Op op{Kind::Allreduce};
  op.dev_in = buf;
  op.dev_out = buf;
  op.in_bytes = op.out_bytes = count * coll::elem_size(t);
  set_out(op, buf, op.in_bytes);
  op.host_in = op.host_out;
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
  op.host_in = mirrors_[static_cast<std::size_t>(mirror(send, bytes))].pinned;  // a collective
  op.dev_out = recv;
  op.out_bytes = bytes * static_cast<std::size_t>(size());
  set_out(op, recv, op.out_bytes);
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
  // Operations whose device data is down and whose mirror is free go to MPI.
  for (Op& op : ops_)
    if (!op.posted && ready(op)) post(op);
  int n = 0;
  const int m = inner_.test_some(inner_done_.data());
  for (int i = 0; i < m; ++i) {
    for (std::size_t k = 0; k < ops_.size(); ++k) {
      Op& op = ops_[k];
      if (!op.posted || op.done || op.inner != inner_done_[static_cast<std::size_t>(i)]) continue;
      // Results go up on the stream: kernels enqueued after this report see them.
      if (op.out_mirror >= 0 && op.dev_out && op.out_bytes > 0) {
        if (cudaMemcpyAsync(op.dev_out, op.host_out, op.out_bytes, cudaMemcpyHostToDevice, s) != cudaSuccess) {
          cudaGetLastError();
          c_.fail(ErrorCode::Cuda, call_, "cudaMemcpyAsync (pinned to device) failed");
        }
        pcie_bytes += op.out_bytes;
        Mirror& m = mirrors_[static_cast<std::size_t>(op.out_mirror)];
        if (cudaEventRecord(static_cast<cudaEvent_t>(m.up), s) != cudaSuccess) {
          cudaGetLastError();
          c_.fail(ErrorCode::Cuda, call_, "cudaEventRecord (staged transport) failed");
        }
        m.up_recorded = true;
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
