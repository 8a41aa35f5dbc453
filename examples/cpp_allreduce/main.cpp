// Sums a vector over all ranks with gradwire, blocking and non-blocking, and checks the
// result. Run: mpirun -np 2 ./cpp_allreduce. Exit status is non-zero on every rank if any
// rank saw a wrong value.
#include <cstdint>
#include <cstdio>
#include <vector>

#include <mpi.h>

#include "gradwire/communicator.hpp"

namespace {

// Rank r contributes r + i + 1 at index i, so the sum is size*(i+1) + size*(size-1)/2:
// small integers, exact in float.
int run(MPI_Comm world) {
  gradwire::Communicator comm(world);
  const int rank = comm.rank(), size = comm.size();
  const std::size_t n = 1000;
  int bad = 0;

  std::vector<float> grad(n), sum(n);
  for (std::size_t i = 0; i < n; ++i) grad[i] = static_cast<float>(rank + i + 1);
  comm.allreduce(grad.data(), sum.data(), n, gradwire::DType::Float32, gradwire::ReduceOp::Sum);
  for (std::size_t i = 0; i < n; ++i) {
    const double want = size * (i + 1.0) + size * (size - 1) / 2.0;
    if (sum[i] != want) ++bad;
  }

  // In place and non-blocking; other work could run between start and wait.
  std::vector<std::int64_t> counts(n, rank + 1);
  gradwire::Request req = comm.iallreduce(counts.data(), counts.data(), n,
                                          gradwire::DType::Int64, gradwire::ReduceOp::Sum);
  req.wait();
  for (std::int64_t c : counts) {
    if (c != std::int64_t{size} * (size + 1) / 2) ++bad;
  }

  if (rank == 0) {
    std::printf("cpp_allreduce: %d ranks, sum[0]=%g sum[%zu]=%g, counts[0]=%lld, "
                "rendezvous %.1f ms\n",
                size, sum[0], n - 1, sum[n - 1], static_cast<long long>(counts[0]),
                comm.rendezvous_seconds() * 1e3);
  }
  if (bad != 0) std::fprintf(stderr, "cpp_allreduce: rank %d: %d wrong values\n", rank, bad);
  int any_bad = 0;
  MPI_Allreduce(&bad, &any_bad, 1, MPI_INT, MPI_MAX, world);
  return any_bad != 0 ? 1 : 0;
}  // comm is destroyed here, before MPI_Finalize

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int status = 1;
  try {
    status = run(MPI_COMM_WORLD);
  } catch (const gradwire::Error& e) {
    std::fprintf(stderr, "cpp_allreduce: %s\n", e.what());
    MPI_Abort(MPI_COMM_WORLD, 2);  // the other ranks may be waiting in a collective
  }
  MPI_Finalize();
  return status;
}
