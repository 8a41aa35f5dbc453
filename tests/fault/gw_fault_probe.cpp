// A job with one misbehaving rank, for the fault tests: the survivors must end the job with a
// clear message inside the deadline (GRADWIRE_TIMEOUT / GRADWIRE_INIT_TIMEOUT).
//   stall       rank 1 never joins a blocking allreduce
//   stall-wait  rank 1 never joins an iallreduce the others wait on
//   late-init   rank 1 never joins the rendezvous
//   die         rank 1 exits without finalizing before the allreduce
#include <mpi.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include <gradwire/communicator.hpp>

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  const char* mode = argc > 1 ? argv[1] : "";
  const bool misbehave = rank == 1;
  if (misbehave && std::strcmp(mode, "late-init") == 0) sleep(120);
  gradwire::Communicator comm(MPI_COMM_WORLD);
  float x[16] = {};
  if (misbehave) {
    if (std::strcmp(mode, "die") == 0) _exit(7);
    sleep(120);  // stalls: never joins
  }
  if (std::strcmp(mode, "stall-wait") == 0) {
    comm.iallreduce(x, x, 16, gradwire::DType::Float32, gradwire::ReduceOp::Sum).wait();
  } else {
    comm.allreduce(x, x, 16, gradwire::DType::Float32, gradwire::ReduceOp::Sum);
  }
  std::printf("rank %d: allreduce returned although rank 1 misbehaved\n", rank);
  MPI_Finalize();
  return 0;
}
