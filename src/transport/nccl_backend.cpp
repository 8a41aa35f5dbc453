#include "transport/nccl_backend.hpp"

#include <cuda_runtime.h>
#include <nccl.h>

#include <cstdio>
#include <vector>

#include "device_assign.hpp"

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

class NcclBackend final : public DeviceBackend {
 public:
  NcclBackend(Communicator::Impl& c, int device) : c_(c), device_(device) {}

  ~NcclBackend() override {
    if (stream_) cudaStreamDestroy(stream_);
    if (comm_) {
      ncclCommFinalize(comm_);
      ncclCommDestroy(comm_);
    }
  }

  void init(const ncclUniqueId& id, double timeout_s, const CallInfo& call) {
    cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), call, "cudaStreamCreate");
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;  // so that a missing peer becomes a deadline, not a hang
    const ncclResult_t r = ncclCommInitRankConfig(&comm_, c_.size, id, c_.rank, &config);
    if (r != ncclSuccess && r != ncclInProgress) fail(r, call, "ncclCommInitRankConfig");
    settle(call, timeout_s, "ncclCommInitRankConfig");
  }

  void allreduce(const void* send, void* recv, std::size_t count, DType t, ReduceOp op,
                 const CallInfo& call) override {
    if (op == ReduceOp::Avg && !is_float(t)) {
      c_.fail(ErrorCode::Unsupported, call,
              "avg on integer device buffers is not supported (NCCL's integer rounding "
              "differs from gradwire's host rule); use sum and divide");
    }
    check(ncclAllReduce(send, recv, count, nccl_type(t), nccl_op(op), comm_, stream_), call,
          "ncclAllReduce");
  }

  void allgather(const void* send, void* recv, std::size_t count, DType t,
                 const CallInfo& call) override {
    check(ncclAllGather(send, recv, count, nccl_type(t), comm_, stream_), call, "ncclAllGather");
  }

  void reduce_scatter(const void* send, void* recv, std::size_t recv_count, DType t,
                      ReduceOp op, const CallInfo& call) override {
    if (op == ReduceOp::Avg && !is_float(t)) {
      c_.fail(ErrorCode::Unsupported, call,
              "avg on integer device buffers is not supported; use sum and divide");
    }
    check(ncclReduceScatter(send, recv, recv_count, nccl_type(t), nccl_op(op), comm_, stream_),
          call, "ncclReduceScatter");
  }

  void broadcast(void* buf, std::size_t count, DType t, int root, const CallInfo& call) override {
    check(ncclBroadcast(buf, buf, count, nccl_type(t), root, comm_, stream_), call,
          "ncclBroadcast");
  }

  void* record(const CallInfo& call) override {
    cudaEvent_t ev = nullptr;
    cuda(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), call, "cudaEventCreate");
    cuda(cudaEventRecord(ev, stream_), call, "cudaEventRecord");
    return ev;
  }

  bool query(void* event, const CallInfo& call) override {
    ncclResult_t async = ncclSuccess;
    ncclCommGetAsyncError(comm_, &async);
    if (async != ncclSuccess && async != ncclInProgress) fail(async, call, "NCCL (asynchronous)");
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
  // A non-blocking communicator answers ncclInProgress until the call is enqueued.
  void check(ncclResult_t r, const CallInfo& call, const char* what) {
    if (r == ncclSuccess) return;
    if (r != ncclInProgress) fail(r, call, what);
    settle(call, c_.timeout_s, what);
  }

  void settle(const CallInfo& call, double timeout_s, const char* what) {
    const std::int64_t deadline = monotonic_ns() + static_cast<std::int64_t>(timeout_s * 1e9);
    ncclResult_t state = ncclInProgress;
    while (true) {
      ncclCommGetAsyncError(comm_, &state);
      if (state == ncclSuccess) return;
      if (state != ncclInProgress) fail(state, call, what);
      if (monotonic_ns() > deadline) {
        abort();
        c_.timed_out(call, c_.policy);
      }
    }
  }

  [[noreturn]] void fail(ncclResult_t r, const CallInfo& call, const char* what) {
    const char* last = comm_ ? ncclGetLastError(comm_) : "";
    c_.fail(ErrorCode::Nccl, call,
            std::string(what) + " failed: " + ncclGetErrorString(r) + (last && *last ? std::string(": ") + last : ""));
  }

  void cuda(cudaError_t e, const CallInfo& call, const char* what) {
    if (e == cudaSuccess) return;
    c_.fail(ErrorCode::Cuda, call, std::string(what) + " failed: " + cudaGetErrorString(e));
  }

  Communicator::Impl& c_;
  int device_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
};

}  // namespace

std::unique_ptr<DeviceBackend> make_nccl_backend(Communicator::Impl& c, int device,
                                                 double timeout_s) {
  CallInfo call;
  call.collective = "NCCL initialisation";
  call.has_data = false;
  int count = 0;
  cudaGetDeviceCount(&count);
  const int dev = device >= 0 ? device : c.local_rank % count;
  if (dev >= count) {
    c.fail(ErrorCode::InvalidArgument, call,
           "device " + std::to_string(dev) + " requested, but this host has " +
               std::to_string(count) + " GPU(s)");
  }
  if (cudaSetDevice(dev) != cudaSuccess) {
    c.fail(ErrorCode::Cuda, call, "cudaSetDevice(" + std::to_string(dev) + ") failed");
  }

  char bus[32] = {};
  cudaDeviceGetPCIBusId(bus, sizeof bus, dev);
  std::vector<char> buses(sizeof bus * static_cast<std::size_t>(c.local_size));
  std::vector<int> ranks(static_cast<std::size_t>(c.local_size));
  MPI_Allgather(bus, sizeof bus, MPI_CHAR, buses.data(), sizeof bus, MPI_CHAR, c.local);
  MPI_Allgather(&c.rank, 1, MPI_INT, ranks.data(), 1, MPI_INT, c.local);
  std::vector<std::string> ids;
  for (int i = 0; i < c.local_size; ++i) ids.emplace_back(&buses[sizeof bus * static_cast<std::size_t>(i)]);
  char host[MPI_MAX_PROCESSOR_NAME] = {};
  int len = 0;
  MPI_Get_processor_name(host, &len);
  const std::string clash = shared_device_error(ids, ranks, host);
  if (!clash.empty()) c.fail(ErrorCode::InvalidArgument, call, clash);

  ncclUniqueId id{};
  if (c.rank == 0) ncclGetUniqueId(&id);
  MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, c.comm);
  auto backend = std::make_unique<NcclBackend>(c, dev);
  backend->init(id, timeout_s, call);
  return backend;
}

}  // namespace gradwire::detail
