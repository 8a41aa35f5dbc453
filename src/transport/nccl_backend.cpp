#include "transport/nccl_backend.hpp"

#include <cuda_runtime.h>
#include <nccl.h>

#include <sched.h>

#include <cstring>

#include "current_device.hpp"
#include "device_assign.hpp"
#include "request_state.hpp"  // monotonic_ns
#include "transport/nccl_calls.hpp"
#include "transport/stream_order.hpp"

namespace gradwire::detail {
namespace {

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::Float32: return ncclFloat32;
    case DType::Float64: return ncclFloat64;
    case DType::Float16: return ncclFloat16;
    case DType::BFloat16: return ncclBfloat16;
    case DType::Int32: return ncclInt32;
    case DType::Int64: return ncclInt64;
    case DType::UInt8: return ncclUint8;
  }
  return ncclFloat32;
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return ncclSum;
    case ReduceOp::Avg: return ncclAvg;
    case ReduceOp::Min: return ncclMin;
    case ReduceOp::Max: return ncclMax;
    case ReduceOp::Prod: return ncclProd;
  }
  return ncclSum;
}

// Device collectives on one NCCL communicator. Every NCCL communicator gradwire makes is
// non-blocking (config.blocking = 0), so a missing peer becomes a deadline, not a hang, and
// no NCCL group ever mixes blocking and non-blocking communicators (NCCL rejects that, and
// a half-finished non-blocking call leaves the thread's group state polluted for every later
// one). The rule that keeps that state clean: after any call that answers ncclInProgress,
// poll ncclCommGetAsyncError until the communicator leaves ncclInProgress before the next
// NCCL call on it, including before ncclCommDestroy.
class NcclBackend final : public DeviceBackend {
 public:
  NcclBackend(Communicator::Impl& c, int device) : c_(c), device_(device) {}

  ~NcclBackend() override {
    shut_down();
    CurrentDevice on(device_);
    if (stream_) cudaStreamDestroy(stream_);
  }

  // ncclCommInitRankConfig from `id`; false and `error` on failure or past `timeout_s`.
  bool init(const char* id, double timeout_s, std::string& error) noexcept {
    if (!make_stream(error)) return false;
    ncclUniqueId uid{};
    std::memcpy(&uid, id, sizeof uid);
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    const ncclResult_t r = ncclCommInitRankConfig(&comm_, c_.size, uid, c_.rank, &config);
    return settle_setup(r, timeout_s, "ncclCommInitRankConfig", error);
  }

  std::unique_ptr<DeviceBackend> split(Communicator::Impl& child, int color, int key,
                                       double timeout_s, std::string& error) noexcept override {
    CurrentDevice on(device_);
    if (!on.ok()) {
      error = on.error();
      return nullptr;
    }
    std::unique_ptr<NcclBackend> b;
    try {
      b = std::make_unique<NcclBackend>(child, device_);
    } catch (const std::exception& e) {
      error = e.what();
      return nullptr;
    }
    if (!b->make_stream(error)) return nullptr;
    // The parent drained before the child is read (nccl_calls.hpp); on failure nothing NCCL
    // may still write is freed, and the parent is left settled or aborted.
    b->comm_ = nccl::split_child(comm_, color, key, timeout_s, error);
    if (!b->comm_) return nullptr;
    int rank = -1, count = -1;
    ncclCommUserRank(b->comm_, &rank);
    ncclCommCount(b->comm_, &count);
    if (rank != child.rank || count != child.size) {
      error = "ncclCommSplit gave rank " + std::to_string(rank) + " of " + std::to_string(count) +
              ", but MPI_Comm_split gave rank " + std::to_string(child.rank) + " of " +
              std::to_string(child.size);
      b->abort();
      return nullptr;
    }
    return b;
  }

  void* split_comm(int color, int key, double timeout_s, std::string& error) noexcept override {
    CurrentDevice on(device_);
    if (!on.ok()) {
      error = on.error();
      return nullptr;
    }
    return nccl::split_child(comm_, color, key, timeout_s, error);
  }

  void allreduce(const void* send, void* recv, std::size_t count, DType t, ReduceOp op,
                 const CallInfo& call) override {
    if (op == ReduceOp::Avg && !is_float(t)) {
      c_.fail(ErrorCode::Unsupported, call,
              "avg on integer device buffers is not supported (NCCL's integer rounding "
              "differs from gradwire's host rule); use sum and divide");
    }
    on_my_gpu(send, recv, call);
    enqueue(call, "ncclAllReduce", [&](ncclComm_t comm) {
      return ncclAllReduce(send, recv, count, nccl_type(t), nccl_op(op), comm, stream_);
    });
  }

  void allgather(const void* send, void* recv, std::size_t count, DType t,
                 const CallInfo& call) override {
    on_my_gpu(send, recv, call);
    enqueue(call, "ncclAllGather", [&](ncclComm_t comm) {
      return ncclAllGather(send, recv, count, nccl_type(t), comm, stream_);
    });
  }

  void reduce_scatter(const void* send, void* recv, std::size_t recv_count, DType t,
                      ReduceOp op, const CallInfo& call) override {
    if (op == ReduceOp::Avg && !is_float(t)) {
      c_.fail(ErrorCode::Unsupported, call,
              "avg on integer device buffers is not supported; use sum and divide");
    }
    on_my_gpu(send, recv, call);
    enqueue(call, "ncclReduceScatter", [&](ncclComm_t comm) {
      return ncclReduceScatter(send, recv, recv_count, nccl_type(t), nccl_op(op), comm, stream_);
    });
  }

  void broadcast(void* buf, std::size_t count, DType t, int root, const CallInfo& call) override {
    on_my_gpu(buf, buf, call);
    enqueue(call, "ncclBroadcast", [&](ncclComm_t comm) {
      return ncclBroadcast(buf, buf, count, nccl_type(t), root, comm, stream_);
    });
  }

  void* record(const CallInfo& call) override {
    // The event must belong to the stream's device, whatever device the caller made current.
    CurrentDevice on(device_);
    if (!on.ok()) c_.fail(ErrorCode::Cuda, call, on.error());
    cudaEvent_t ev = nullptr;
    cudaError_t e = cudaEventCreateWithFlags(&ev, cudaEventDisableTiming);
    if (e == cudaSuccess) e = cudaEventRecord(ev, stream_);
    if (e != cudaSuccess && ev) cudaEventDestroy(ev);
    cuda(e, call, "cudaEventCreate/cudaEventRecord");
    return ev;
  }

  bool query(void* event, const CallInfo& call) override {
    if (comm_) {
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(comm_, &async);
      if (async != ncclSuccess && async != ncclInProgress) fail(async, call, "NCCL (asynchronous)");
    }
    const cudaError_t e = cudaEventQuery(static_cast<cudaEvent_t>(event));
    if (e == cudaErrorNotReady) return false;
    cuda(e, call, "cudaEventQuery");
    return true;
  }

  void release_event(void* event) noexcept override {
    cudaEventDestroy(static_cast<cudaEvent_t>(event));
  }

  void abort() noexcept override {
    if (comm_) ncclCommAbort(comm_);
    comm_ = nullptr;
  }

  int device() const noexcept override { return device_; }

 private:
  // A buffer on another GPU than the communicator's would fault inside NCCL's kernel: say so
  // first. (The setup picks the GPU lazily, so a buffer allocated before it may be elsewhere.)
  void on_my_gpu(const void* send, const void* recv, const CallInfo& call) {
    for (const void* p : {send, recv}) {
      cudaPointerAttributes a{};
      if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
        cudaGetLastError();
        continue;
      }
      if (a.type == cudaMemoryTypeDevice && a.device != device_) {
        c_.fail(ErrorCode::InvalidArgument, call,
                std::string(p == send ? "send" : "recv") + " buffer is on GPU " +
                    std::to_string(a.device) + ", but this communicator's NCCL communicator is "
                    "on GPU " + std::to_string(device_) +
                    " (local rank modulo the GPU count, or Options::device): allocate on it "
                    "(cudaSetDevice, or setup_device() first and then Communicator::device())");
      }
      if (send == recv) break;
    }
  }

  bool make_stream(std::string& error) noexcept {
    cudaError_t e = cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking);
    if (e == cudaSuccess) e = order_.init();
    if (e == cudaSuccess) return true;
    cudaGetLastError();
    error = std::string("cudaStreamCreate/cudaEventCreate failed: ") + cudaGetErrorString(e);
    stream_ = nullptr;
    return false;
  }

  // Polls a setup call (init, split) until it leaves ncclInProgress. On failure or past the
  // deadline the communicator is aborted, so nothing is left in progress.
  bool settle_setup(ncclResult_t r, double timeout_s, const char* what,
                    std::string& error) noexcept {
    ncclResult_t state = r;
    const std::int64_t deadline = monotonic_ns() + timeout_ns(timeout_s);
    for (unsigned spins = 0; state == ncclInProgress && comm_; ++spins) {
      if (monotonic_ns() > deadline) {
        error = std::string(what) + " did not complete within " + std::to_string(timeout_s) +
                " s (GRADWIRE_INIT_TIMEOUT)";
        abort();
        return false;
      }
      if (spins > 1000) sched_yield();
      if (ncclCommGetAsyncError(comm_, &state) != ncclSuccess) state = ncclInternalError;
    }
    if (state == ncclSuccess && comm_) return true;
    error = describe(state == ncclInProgress ? ncclInternalError : state, what);
    abort();
    return false;
  }

  // Finalize, wait (bounded by the communicator's deadline) until NCCL says the communicator
  // is quiescent, then destroy it; on an error or past the deadline, abort it instead, which
  // never waits on peers (nccl_calls.hpp). Never throws.
  void shut_down() noexcept {
    if (!comm_) return;
    CurrentDevice on(device_);
    nccl::close(comm_, c_.timeout_s);
    comm_ = nullptr;
  }

  // The caller's stream of a communicator-level device call: the default stream (see
  // stream_order.hpp and docs/collectives.md, "Streams and ordering").
  static cudaStream_t caller_stream() noexcept { return cudaStreamLegacy; }

  // One device collective: on this communicator's GPU, after the caller's earlier work on its
  // stream and before its later work, settled before the next NCCL call.
  template <class Enqueue>
  void enqueue(const CallInfo& call, const char* what, Enqueue&& f) {
    CurrentDevice on(device_);
    if (!on.ok()) c_.fail(ErrorCode::Cuda, call, on.error());
    const ncclComm_t comm = live(call);
    cuda(order_.enter(caller_stream(), stream_), call,
         "ordering after the caller's stream (cudaEventRecord/cudaStreamWaitEvent)");
    check(f(comm), call, what);
    cuda(order_.leave(stream_, caller_stream()), call,
         "ordering the caller's stream after the call (cudaEventRecord/cudaStreamWaitEvent)");
  }

  ncclComm_t live(const CallInfo& call) {
    if (!comm_) {
      c_.fail(ErrorCode::Nccl, call,
              "the NCCL communicator was aborted after an earlier error or timeout; make a new "
              "Communicator");
    }
    return comm_;
  }

  // A non-blocking communicator answers ncclInProgress until the call is enqueued.
  void check(ncclResult_t r, const CallInfo& call, const char* what) {
    if (r == ncclSuccess) return;
    if (r != ncclInProgress) fail(r, call, what);
    settle(call, c_.timeout_s, what);
  }

  void settle(const CallInfo& call, double timeout_s, const char* what) {
    const std::int64_t deadline = monotonic_ns() + timeout_ns(timeout_s);
    ncclResult_t state = ncclInProgress;
    for (unsigned spins = 0;; ++spins) {
      ncclCommGetAsyncError(comm_, &state);
      if (state == ncclSuccess) return;
      if (state != ncclInProgress) fail(state, call, what);
      if (monotonic_ns() > deadline) {
        abort();
        c_.timed_out(call, c_.policy);
      }
      if (spins > 1000) sched_yield();
    }
  }

  std::string describe(ncclResult_t r, const char* what) const {
    return nccl::describe(comm_, r, what);
  }

  [[noreturn]] void fail(ncclResult_t r, const CallInfo& call, const char* what) {
    c_.fail(ErrorCode::Nccl, call, describe(r, what));
  }

  void cuda(cudaError_t e, const CallInfo& call, const char* what) {
    if (e == cudaSuccess) return;
    cudaGetLastError();
    c_.fail(ErrorCode::Cuda, call, std::string(what) + " failed: " + cudaGetErrorString(e));
  }

  Communicator::Impl& c_;
  int device_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  StreamOrder order_;
};

}  // namespace

DeviceProblem pick_nccl_device(const Communicator::Impl& c, int requested, NcclDevice& out) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count <= 0) {
    cudaGetLastError();
    return {ErrorCode::Unsupported,
            "no CUDA device is visible (host-memory collectives and plans need none)"};
  }
  const int dev = chosen_device(requested, c.local_rank, count);
  if (dev >= count) {
    return {ErrorCode::InvalidArgument, "Options::device " + std::to_string(dev) +
                                            " requested, but this host has " +
                                            std::to_string(count) + " GPU(s)"};
  }
  cudaError_t e = cudaSetDevice(dev);
  char bus[32] = {};
  if (e == cudaSuccess) e = cudaDeviceGetPCIBusId(bus, sizeof bus, dev);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return {ErrorCode::Cuda, "cudaSetDevice/cudaDeviceGetPCIBusId(" + std::to_string(dev) +
                                 ") failed: " + cudaGetErrorString(e)};
  }
  out.device = dev;
  out.bus_id = bus;
  return {};
}

DeviceProblem nccl_unique_id(char* id) {
  static_assert(sizeof(ncclUniqueId) == kNcclIdBytes, "NCCL_UNIQUE_ID_BYTES changed");
  ncclUniqueId uid{};
  const ncclResult_t r = ncclGetUniqueId(&uid);
  if (r != ncclSuccess) {
    return {ErrorCode::Nccl, std::string("ncclGetUniqueId failed: ") + ncclGetErrorString(r)};
  }
  std::memcpy(id, &uid, sizeof uid);
  return {};
}

std::unique_ptr<DeviceBackend> init_nccl_backend(Communicator::Impl& c, int device,
                                                 const char* id, double timeout_s,
                                                 std::string& error) noexcept {
  try {
    auto b = std::make_unique<NcclBackend>(c, device);
    if (!b->init(id, timeout_s, error)) return nullptr;
    return b;
  } catch (const std::exception& e) {  // allocation
    error = e.what();
    return nullptr;
  }
}

}  // namespace gradwire::detail
