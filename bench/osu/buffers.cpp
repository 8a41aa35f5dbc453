#include "buffers.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <utility>

#if GRADWIRE_HAVE_CUDA
#include <cuda_runtime.h>
#endif
#if defined(OPEN_MPI) && __has_include(<mpi-ext.h>)
#include <mpi-ext.h>  // MPIX_Query_cuda_support
#endif
#if GRADWIRE_HAVE_NCCL
#include <nccl.h>
#endif

namespace gwbench {
namespace {

#if GRADWIRE_HAVE_CUDA
void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}
#endif
#if GRADWIRE_HAVE_NCCL
void nccl_check(ncclResult_t e, const char* what) {
  if (e != ncclSuccess) throw std::runtime_error(std::string(what) + ": " + ncclGetErrorString(e));
}
// The baseline's NCCL communicator is non-blocking, like gradwire's: NCCL rejects blocking and
// non-blocking communicators in one group, so one process keeps to one kind. A call that
// answers ncclInProgress is polled until it is enqueued (or 300 s pass) before the next one.
ncclResult_t nccl_wait(ncclComm_t c, ncclResult_t r) {
  const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(300);
  while (r == ncclInProgress && std::chrono::steady_clock::now() < limit) {
    if (ncclCommGetAsyncError(c, &r) != ncclSuccess) return ncclInternalError;
  }
  return r;
}
void nccl_settle(ncclComm_t c, ncclResult_t r, const char* what) {
  nccl_check(nccl_wait(c, r), what);
}
ncclDataType_t nccl_type(gradwire::DType t) {
  switch (t) {
    case gradwire::DType::Float32: return ncclFloat32;
    case gradwire::DType::Float64: return ncclFloat64;
    case gradwire::DType::Float16: return ncclFloat16;
    case gradwire::DType::BFloat16: return ncclBfloat16;
    case gradwire::DType::Int32: return ncclInt32;
    case gradwire::DType::Int64: return ncclInt64;
    default: return ncclUint8;
  }
}
ncclRedOp_t nccl_op(gradwire::ReduceOp op) {
  switch (op) {
    case gradwire::ReduceOp::Avg: return ncclAvg;
    case gradwire::ReduceOp::Min: return ncclMin;
    case gradwire::ReduceOp::Max: return ncclMax;
    case gradwire::ReduceOp::Prod: return ncclProd;
    default: return ncclSum;
  }
}
#endif

double now_s() { return MPI_Wtime(); }

}  // namespace

Buffer::Buffer(std::size_t bytes, bool device) : n_(bytes), dev_(device) {
  const std::size_t alloc = (bytes + 63) / 64 * 64 + 64;
  if (device) {
#if GRADWIRE_HAVE_CUDA
    cuda_check(cudaMalloc(&p_, alloc), "cudaMalloc");
    cuda_check(cudaMemset(p_, 0, alloc), "cudaMemset");
#else
    throw std::runtime_error("device memory in a build without CUDA");
#endif
  } else {
    p_ = std::aligned_alloc(64, alloc);
    if (!p_) throw std::runtime_error("out of host memory");
    std::memset(p_, 0, alloc);
  }
}

Buffer::~Buffer() {
  if (!p_) return;
#if GRADWIRE_HAVE_CUDA
  if (dev_) {
    cudaFree(p_);
    return;
  }
#endif
  std::free(p_);
}

Buffer::Buffer(Buffer&& o) noexcept
    : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)), dev_(o.dev_) {}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  std::swap(p_, o.p_);
  std::swap(n_, o.n_);
  std::swap(dev_, o.dev_);
  return *this;
}

void Buffer::upload(const std::vector<unsigned char>& h) {
  if (h.size() > n_) throw std::logic_error("upload larger than the buffer");
#if GRADWIRE_HAVE_CUDA
  if (dev_) {
    cuda_check(cudaMemcpy(p_, h.data(), h.size(), cudaMemcpyHostToDevice), "cudaMemcpy");
    return;
  }
#endif
  std::memcpy(p_, h.data(), h.size());
}

void Buffer::download(std::vector<unsigned char>& h) const {
  h.resize(n_);
#if GRADWIRE_HAVE_CUDA
  if (dev_) {
    cuda_check(cudaMemcpy(h.data(), p_, n_, cudaMemcpyDeviceToHost), "cudaMemcpy");
    return;
  }
#endif
  std::memcpy(h.data(), p_, n_);
}

std::string device_unavailable(const std::string& backend) {
#if !GRADWIRE_HAVE_CUDA
  (void)backend;
  return "this build of gradwire has no CUDA (configure with -DGRADWIRE_CUDA=ON on a machine "
         "with the CUDA toolkit)";
#else
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    cudaGetLastError();
    return "no CUDA device is visible on this host";
  }
#if !GRADWIRE_HAVE_NCCL
  if (backend == "nccl") return "this build of gradwire has no NCCL (--backend nccl)";
#endif
  if (backend == "mpi") {
    // The baseline then hands device pointers to MPI: only a CUDA-aware MPI takes them.
#if defined(MPIX_CUDA_AWARE_SUPPORT) && MPIX_CUDA_AWARE_SUPPORT
    if (MPIX_Query_cuda_support() != 1) return "--backend mpi: this MPI library is not CUDA-aware at run time";
#else
    return "--backend mpi: this MPI library is not CUDA-aware (no MPIX_CUDA_AWARE_SUPPORT)";
#endif
  }
  return "";
#endif
}

MPI_Datatype mpi_type(gradwire::DType t) {
  switch (t) {
    case gradwire::DType::Float32: return MPI_FLOAT;
    case gradwire::DType::Float64: return MPI_DOUBLE;
    case gradwire::DType::Int32: return MPI_INT32_T;
    case gradwire::DType::Int64: return MPI_INT64_T;
    case gradwire::DType::UInt8: return MPI_UINT8_T;
    default: return MPI_UINT16_T;
  }
}

MPI_Op mpi_op(gradwire::ReduceOp op, gradwire::DType t) {
  if (t == gradwire::DType::Float16 || t == gradwire::DType::BFloat16) return MPI_MAX;
  switch (op) {
    case gradwire::ReduceOp::Min: return MPI_MIN;
    case gradwire::ReduceOp::Max: return MPI_MAX;
    case gradwire::ReduceOp::Prod: return MPI_PROD;
    default: return MPI_SUM;  // avg: MPI has none; the baseline sums
  }
}

Engine::Engine(MPI_Comm world, const std::string& backend, bool device) {
  MPI_Comm_dup(world, &comm_);  // the baseline runs on its own duplicate, as gradwire does
  nccl_ = backend == "nccl";
  (void)device;
#if GRADWIRE_HAVE_NCCL
  if (nccl_) {
    int rank = 0, size = 1;
    MPI_Comm_rank(comm_, &rank);
    MPI_Comm_size(comm_, &size);
    ncclUniqueId id;
    if (rank == 0) nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, comm_);
    cudaStream_t s;
    cuda_check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
    stream_ = s;
    ncclComm_t c = nullptr;
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    const ncclResult_t r = ncclCommInitRankConfig(&c, size, id, rank, &config);
    nccl_comm_ = c;
    nccl_settle(c, r, "ncclCommInitRankConfig");
  }
#else
  if (nccl_) throw std::runtime_error("--backend nccl in a build without NCCL");
#endif
}

Engine::~Engine() {
#if GRADWIRE_HAVE_NCCL
  if (nccl_comm_) {  // finalize, wait until quiescent, destroy; abort on an error
    auto c = static_cast<ncclComm_t>(nccl_comm_);
    if (nccl_wait(c, ncclCommFinalize(c)) == ncclSuccess) {
      ncclCommDestroy(c);
    } else {
      ncclCommAbort(c);
    }
  }
  if (stream_) cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
#endif
  if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

#if GRADWIRE_HAVE_NCCL
#define GW_NCCL_CALL(expr)                                                                \
  do {                                                                                     \
    auto gw_comm = static_cast<ncclComm_t>(nccl_comm_);                                    \
    auto gw_stream = static_cast<cudaStream_t>(stream_);                                   \
    nccl_settle(gw_comm, expr, #expr);                                                     \
    cuda_check(cudaStreamSynchronize(gw_stream), "cudaStreamSynchronize");                 \
  } while (0)
#endif

void Engine::allreduce(const void* s, void* r, std::size_t count, gradwire::DType t,
                       gradwire::ReduceOp op) {
#if GRADWIRE_HAVE_NCCL
  if (nccl_) {
    GW_NCCL_CALL(ncclAllReduce(s, r, count, nccl_type(t), nccl_op(op), gw_comm, gw_stream));
    return;
  }
#endif
  MPI_Allreduce(s, r, static_cast<int>(count), mpi_type(t), mpi_op(op, t), comm_);
}

void Engine::allgather(const void* s, void* r, std::size_t count, gradwire::DType t) {
#if GRADWIRE_HAVE_NCCL
  if (nccl_) {
    GW_NCCL_CALL(ncclAllGather(s, r, count, nccl_type(t), gw_comm, gw_stream));
    return;
  }
#endif
  MPI_Allgather(s, static_cast<int>(count), mpi_type(t), r, static_cast<int>(count), mpi_type(t), comm_);
}

void Engine::reduce_scatter(const void* s, void* r, std::size_t recv_count, gradwire::DType t,
                            gradwire::ReduceOp op) {
#if GRADWIRE_HAVE_NCCL
  if (nccl_) {
    GW_NCCL_CALL(ncclReduceScatter(s, r, recv_count, nccl_type(t), nccl_op(op), gw_comm, gw_stream));
    return;
  }
#endif
  MPI_Reduce_scatter_block(s, r, static_cast<int>(recv_count), mpi_type(t), mpi_op(op, t), comm_);
}

void Engine::bcast(void* b, std::size_t count, gradwire::DType t, int root) {
#if GRADWIRE_HAVE_NCCL
  if (nccl_) {
    GW_NCCL_CALL(ncclBroadcast(b, b, count, nccl_type(t), root, gw_comm, gw_stream));
    return;
  }
#endif
  MPI_Bcast(b, static_cast<int>(count), mpi_type(t), root, comm_);
}

namespace {
std::mutex what_mu;
}

Watchdog* Watchdog::current = nullptr;

Watchdog::Watchdog(const char* bench, double timeout_s, int rank)
    : bench_(bench), timeout_s_(timeout_s), rank_(rank) {
  current = this;
  thread_ = std::thread([this] {
    while (!stop_.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      const double t0 = since_.load();
      if (t0 >= 0 && now_s() - t0 > timeout_s_) {
        std::string what;
        {
          std::lock_guard<std::mutex> g(what_mu);
          what = what_;
        }
        std::fprintf(stderr, "%s: rank %d: %s did not finish within --timeout %.0f s; aborting the job\n",
                     bench_, rank_, what.c_str(), timeout_s_);
        std::fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, 124);
      }
    }
  });
}

Watchdog::~Watchdog() {
  current = nullptr;
  stop_.store(true);
  thread_.join();
}

void Watchdog::arm(const std::string& what) {
  {
    std::lock_guard<std::mutex> g(what_mu);
    what_ = what;
  }
  since_.store(now_s());
}

void Watchdog::disarm() { since_.store(-1.0); }

}  // namespace gwbench
