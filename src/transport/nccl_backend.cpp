#include "transport/nccl_backend.hpp"

#include <cuda_runtime.h>
#include <nccl.h>

#include <sched.h>

#include <cstring>

#include "request_state.hpp"  // poll_until_done

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
  void* nccl_comm() const noexcept override { return comm_; }

  ~NcclBackend() override {
    shut_down();
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
    if (!comm_) {
      error = "the parent's NCCL communicator was aborted";
      return nullptr;
    }
    auto b = std::make_unique<NcclBackend>(child, device_);
    if (cudaSetDevice(device_) != cudaSuccess) {
      error = "cudaSetDevice(" + std::to_string(device_) + ") failed: " +
              cudaGetErrorString(cudaGetLastError());
      return nullptr;
    }
    if (!b->make_stream(error)) return nullptr;
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;  // as the parent: never mixed in one group
    const ncclResult_t r = ncclCommSplit(comm_, color, key, &b->comm_, &config);
    // A non-blocking split reports its progress on the new communicator; the parent, too,
    // must have left ncclInProgress before its next call.
    if (!b->settle_setup(r, timeout_s, "ncclCommSplit", error)) return nullptr;
    ncclResult_t parent = ncclInProgress;
    const std::int64_t deadline = monotonic_ns() + timeout_ns(timeout_s);
    while (ncclCommGetAsyncError(comm_, &parent) == ncclSuccess && parent == ncclInProgress &&
           monotonic_ns() < deadline) {
      sched_yield();
    }
    if (parent != ncclSuccess) {
      error = describe(parent, "the parent communicator after ncclCommSplit");
      b->abort();
      return nullptr;
    }
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

  void allreduce(const void* send, void* recv, std::size_t count, DType t, ReduceOp op,
                 const CallInfo& call) override {
    if (op == ReduceOp::Avg && !is_float(t)) {
      c_.fail(ErrorCode::Unsupported, call,
              "avg on integer device buffers is not supported (NCCL's integer rounding "
              "differs from gradwire's host rule); use sum and divide");
    }
    on_my_gpu(send, recv, call);
    check(ncclAllReduce(send, recv, count, nccl_type(t), nccl_op(op), live(call), stream_), call,
          "ncclAllReduce");
  }

  void allgather(const void* send, void* recv, std::size_t count, DType t,
                 const CallInfo& call) override {
    on_my_gpu(send, recv, call);
    check(ncclAllGather(send, recv, count, nccl_type(t), live(call), stream_), call,
          "ncclAllGather");
  }

  void reduce_scatter(const void* send, void* recv, std::size_t recv_count, DType t,
                      ReduceOp op, const CallInfo& call) override {
    if (op == ReduceOp::Avg && !is_float(t)) {
      c_.fail(ErrorCode::Unsupported, call,
              "avg on integer device buffers is not supported; use sum and divide");
    }
    on_my_gpu(send, recv, call);
    check(ncclReduceScatter(send, recv, recv_count, nccl_type(t), nccl_op(op), live(call),
                            stream_),
          call, "ncclReduceScatter");
  }

  void broadcast(void* buf, std::size_t count, DType t, int root, const CallInfo& call) override {
    on_my_gpu(buf, buf, call);
    check(ncclBroadcast(buf, buf, count, nccl_type(t), root, live(call), stream_), call,
          "ncclBroadcast");
  }

  void* record(const CallInfo& call) override {
    // The event must belong to the stream's device, whatever device the caller made current.
    int current = -1;
    cudaGetDevice(&current);
    if (current != device_) cuda(cudaSetDevice(device_), call, "cudaSetDevice");
    cudaEvent_t ev = nullptr;
    cudaError_t e = cudaEventCreateWithFlags(&ev, cudaEventDisableTiming);
    if (e == cudaSuccess) e = cudaEventRecord(ev, stream_);
    if (current != device_ && current >= 0) cudaSetDevice(current);
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
    const cudaError_t e = cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking);
    if (e == cudaSuccess) return true;
    cudaGetLastError();
    error = std::string("cudaStreamCreate failed: ") + cudaGetErrorString(e);
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
  // never waits on peers. Never throws.
  void shut_down() noexcept {
    if (!comm_) return;
    int current = -1;
    cudaGetDevice(&current);
    if (current != device_) cudaSetDevice(device_);
    bool quiescent = false;
    const ncclResult_t r = ncclCommFinalize(comm_);
    if (r == ncclSuccess || r == ncclInProgress) {
      CallInfo call;
      call.collective = "NCCL finalize";
      call.has_data = false;
      try {
        poll_until_done(c_, call, OnTimeout::Return, [&] {
          ncclResult_t state = ncclInternalError;
          if (ncclCommGetAsyncError(comm_, &state) != ncclSuccess) return true;
          if (state == ncclInProgress) return false;
          quiescent = state == ncclSuccess;
          return true;
        });
      } catch (...) {
        // past the deadline: quiescent stays false
      }
    }
    // A failed destroy may have freed part of the communicator: never abort it afterwards.
    if (quiescent) {
      ncclCommDestroy(comm_);
    } else {
      ncclCommAbort(comm_);
    }
    comm_ = nullptr;
    if (current >= 0 && current != device_) cudaSetDevice(current);
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
    const char* last = ncclGetLastError(comm_);
    return std::string(what) + " failed: " + ncclGetErrorString(r) +
           (last && *last ? std::string(": ") + last : "");
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
};

}  // namespace

DeviceProblem pick_nccl_device(const Communicator::Impl& c, int requested, NcclDevice& out) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count <= 0) {
    cudaGetLastError();
    return {ErrorCode::Unsupported,
            "no CUDA device is visible (host-memory collectives and plans need none)"};
  }
  const int dev = requested >= 0 ? requested : c.local_rank % count;
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
