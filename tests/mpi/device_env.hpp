// Whether this job can run device-memory collectives, and if not, why: the reason a device
// test prints when it skips. Collective over MPI_COMM_WORLD; the same answer on every rank.
#pragma once

#include <mpi.h>

#include <string>

#include <gradwire/config.hpp>

#if GRADWIRE_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace gwtest {

inline int gpu_count() {
#if GRADWIRE_HAVE_CUDA
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
#else
  return 0;
#endif
}

// Every rank sees at least one GPU.
inline bool gpu_on_every_rank() {
  int have = gpu_count() > 0 ? 1 : 0;
  MPI_Allreduce(MPI_IN_PLACE, &have, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  return have == 1;
}

// Two ranks of one host would pick the same GPU by gradwire's rule (local rank modulo the
// device count): more ranks on a host than it has GPUs.
inline bool ranks_share_a_gpu() {
  MPI_Comm local = MPI_COMM_NULL;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local);
  int local_size = 1;
  MPI_Comm_size(local, &local_size);
  MPI_Comm_free(&local);
  const int n = gpu_count();
  int share = n > 0 && local_size > n ? 1 : 0;
  MPI_Allreduce(MPI_IN_PLACE, &share, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return share == 1;
}

// Makes current the GPU gradwire's device setup will pick (local rank modulo the device count),
// so that buffers allocated before the first device call live on it.
inline void use_gradwire_gpu() {
#if GRADWIRE_HAVE_CUDA
  MPI_Comm local = MPI_COMM_NULL;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local);
  int local_rank = 0;
  MPI_Comm_rank(local, &local_rank);
  MPI_Comm_free(&local);
  const int n = gpu_count();
  if (n > 0) cudaSetDevice(local_rank % n);
#endif
}

// "" where every rank has a GPU of its own and gradwire has NCCL; else why device-memory
// collectives cannot run here.
inline std::string device_skip_reason() {
  if (!GRADWIRE_HAVE_NCCL) return "gradwire built without NCCL: device collectives not compiled";
  if (!gpu_on_every_rank()) return "no GPU visible to every rank: device collectives not run";
  if (ranks_share_a_gpu()) {
    return "ranks of one host share a GPU (more ranks than GPUs): device collectives need one "
           "GPU per rank, host tests run (DeviceSetup.SharedGpuIsAClearErrorForDeviceCallsOnly "
           "checks the error)";
  }
  return "";
}

}  // namespace gwtest
