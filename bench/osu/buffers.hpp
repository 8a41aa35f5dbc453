// Benchmark buffers in host or device memory, the baseline engines (MPI, NCCL) called
// directly, and a watchdog for the baseline's calls (gradwire bounds its own waits).
#pragma once

#include <mpi.h>

#include <atomic>
#include <cstddef>
#include <string>
#include <thread>
#include <vector>

#include <gradwire/communicator.hpp>
#include <gradwire/config.hpp>
#include <gradwire/types.hpp>

namespace gwbench {

// Exit status of a run that skipped itself (e.g. -d cuda without a GPU); CTest's
// SKIP_RETURN_CODE.
inline constexpr int kSkip = 77;

// Bytes in host memory (64-byte aligned) or, with -d cuda, in device memory.
class Buffer {
 public:
  Buffer() = default;
  Buffer(std::size_t bytes, bool device);
  ~Buffer();
  Buffer(Buffer&& o) noexcept;
  Buffer& operator=(Buffer&& o) noexcept;
  void* data() const { return p_; }
  std::size_t bytes() const { return n_; }
  void upload(const std::vector<unsigned char>& h);          // h.size() <= bytes()
  void download(std::vector<unsigned char>& h) const;        // resizes h to bytes()

 private:
  void* p_ = nullptr;
  std::size_t n_ = 0;
  bool dev_ = false;
};

// Why device memory cannot be used here ("" when it can): no CUDA in this build, no GPU,
// no NCCL for --backend nccl.
std::string device_unavailable(const std::string& backend);

// The plain engine collective, called directly on its own communicator: the baseline.
class Engine {
 public:
  Engine(MPI_Comm world, const std::string& backend, bool device);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;
  MPI_Comm comm() const { return comm_; }
  std::string name(const char* mpi_name, const char* nccl_name) const {
    return nccl_ ? nccl_name : mpi_name;
  }
  void allreduce(const void* s, void* r, std::size_t count, gradwire::DType t, gradwire::ReduceOp op);
  void allgather(const void* s, void* r, std::size_t count, gradwire::DType t);
  void reduce_scatter(const void* s, void* r, std::size_t recv_count, gradwire::DType t,
                      gradwire::ReduceOp op);
  void bcast(void* b, std::size_t count, gradwire::DType t, int root);

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  bool nccl_ = false;
  void* nccl_comm_ = nullptr;  // ncclComm_t
  void* stream_ = nullptr;     // cudaStream_t
};

// MPI's type for the baseline: 16-bit floats, which MPI lacks, travel as MPI_UINT16_T (the
// same bytes; the baseline then reduces them with MPI_MAX, the nearest thing MPI offers).
MPI_Datatype mpi_type(gradwire::DType t);
MPI_Op mpi_op(gradwire::ReduceOp op, gradwire::DType t);

// Aborts the job when one call runs past the deadline (the baseline's MPI calls have no
// deadline of their own). Arm before a call, disarm after.
class Watchdog {
 public:
  Watchdog(const char* bench, double timeout_s, int rank);
  ~Watchdog();
  void arm(const std::string& what);   // start a deadline for `what`
  void beat() {                        // progress: restart the deadline (cheap)
    if (since_.load(std::memory_order_relaxed) >= 0) since_.store(MPI_Wtime(), std::memory_order_relaxed);
  }
  void disarm();
  static Watchdog* current;            // the one time_calls() beats, if any

 private:
  const char* bench_;
  double timeout_s_;
  int rank_;
  std::atomic<bool> stop_{false};
  std::atomic<double> since_{-1.0};
  std::string what_;
  std::thread thread_;
};

}  // namespace gwbench
