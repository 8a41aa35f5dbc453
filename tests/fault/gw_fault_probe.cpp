// A job with one misbehaving rank, for the fault tests: the survivors must end the job with a
// clear message inside the deadline (GRADWIRE_TIMEOUT / GRADWIRE_INIT_TIMEOUT).
//   stall       rank 1 never joins a blocking allreduce
//   stall-wait  rank 1 never joins an iallreduce the others wait on
//   late-init   rank 1 never joins the rendezvous
//   die         rank 1 exits without finalizing before the allreduce
//   sigstop     rank 1 stops itself (SIGSTOP) before the allreduce
//   loop        every rank prints its pid, then allreduces in a loop (bench/fault/campaign.sh
//               kills or stops one from outside); with GW_FAULT_EXIT_RANK=r and
//               GW_FAULT_EXIT_AFTER_S=s, rank r exits early (without finalizing) after s seconds
#include <mpi.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
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
  if (std::strcmp(mode, "loop") == 0) {
    std::printf("gw_fault_probe: rank %d pid %d\n", rank, static_cast<int>(getpid()));
    std::fflush(stdout);
    const char* er = std::getenv("GW_FAULT_EXIT_RANK");
    const char* es = std::getenv("GW_FAULT_EXIT_AFTER_S");
    const double exit_after = er && es && std::atoi(er) == rank ? std::atof(es) : -1;
    const double t0 = MPI_Wtime();
    for (;;) {
      if (exit_after >= 0 && MPI_Wtime() - t0 > exit_after) {
        const double epoch = std::chrono::duration<double>(
                                 std::chrono::system_clock::now().time_since_epoch()).count();
        std::printf("gw_fault_probe: rank %d exits early at %.3f\n", rank, epoch);
        std::fflush(stdout);
        _exit(7);
      }
      comm.allreduce(x, x, 16, gradwire::DType::Float32, gradwire::ReduceOp::Sum);
      usleep(1000);
    }
  }
  if (misbehave) {
    if (std::strcmp(mode, "die") == 0) _exit(7);
    if (std::strcmp(mode, "sigstop") == 0) raise(SIGSTOP);
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
