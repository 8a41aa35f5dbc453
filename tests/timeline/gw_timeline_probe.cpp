// Jobs that record a timeline (docs/timeline.md), for check_timeline.py to read:
//   mixed PATH        a dense allreduce, an iallreduce, an SRA q8 plan and a sparse top-k plan
//                     (labelled), a few runs each
//   stall PATH        as mixed's plans, but rank 1 sleeps 400 ms before one dense allreduce and
//                     before one SRA run: the others wait for it
//   many PATH N       N runs of a small SRA plan (GRADWIRE_TIMELINE_EVENTS bounds the file)
//   timeout PATH      rank 1 never joins an SRA run; the others time out (GRADWIRE_TIMEOUT)
//                     and abort, each writing its own part with the culprit named
//   late-close PATH   a few runs, then rank 1 keeps its communicator 3 s past GRADWIRE_TIMEOUT:
//                     rank 0 writes the trace without it in bounded time, rank 1 its own part
#include <mpi.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <gradwire/communicator.hpp>
#include <gradwire/plan.hpp>

namespace {

gradwire::PlanConfig plan_of(std::size_t n, const char* codec, const char* algorithm) {
  gradwire::PlanConfig c;
  c.count = n;
  c.codec = codec;
  c.algorithm = algorithm;
  c.op = gradwire::ReduceOp::Avg;
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  const std::string mode = argc > 1 ? argv[1] : "";
  gradwire::Options o;
  o.timeline = argc > 2 ? argv[2] : "";
  int rc = 0;
  {
    gradwire::Communicator comm(MPI_COMM_WORLD, o);
    const std::size_t n = 1 << 16;
    std::vector<float> x(n), y(n);
    for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<float>((i * 7 + static_cast<std::size_t>(rank)) % 13) - 6.0f;
    gradwire::Plan sra(comm, plan_of(n, "q8", "sra"));
    gradwire::Plan sparse(comm, plan_of(n, "topk:0.01", "sparse-allgather"));
    sra.set_label("bucket 0: fc.weight .. fc.bias");
    sparse.set_label("bucket 1: conv1.weight .. conv1.bias");
    if (mode == "mixed" || mode == "stall") {
      for (int i = 0; i < 3; ++i) {
        if (mode == "stall" && rank == 1 && i == 1) usleep(400000);
        comm.allreduce(x.data(), y.data(), n, gradwire::DType::Float32, gradwire::ReduceOp::Sum);
      }
      comm.iallreduce(x.data(), y.data(), n, gradwire::DType::Float32, gradwire::ReduceOp::Sum).wait();
      for (int i = 0; i < 3; ++i) {
        if (mode == "stall" && rank == 1 && i == 1) usleep(400000);
        sra.run(x.data(), y.data());
        sparse.run(x.data(), y.data());
      }
      if (sra.stats().algorithm != "sra" || sparse.stats().algorithm != "sparse-allgather") {
        std::fprintf(stderr, "rank %d: unexpected algorithms %s, %s\n", rank,
                     sra.stats().algorithm.c_str(), sparse.stats().algorithm.c_str());
        rc = 1;
      }
    } else if (mode == "many") {
      const long runs = argc > 3 ? std::atol(argv[3]) : 100000;
      gradwire::Plan small(comm, plan_of(64, "q8", "sra"));
      for (long i = 0; i < runs; ++i) small.run(x.data(), y.data());
    } else if (mode == "late-close") {
      for (int i = 0; i < 3; ++i) sra.run(x.data(), y.data());
      if (rank == 1) sleep(static_cast<unsigned>(comm.timeout_seconds()) + 3);
    } else if (mode == "timeout") {
      if (rank == 1) sleep(60);
      sra.run(x.data(), y.data());
      std::fprintf(stderr, "rank %d: the run returned although rank 1 stalled\n", rank);
      rc = 1;
    } else {
      std::fprintf(stderr, "usage: gw_timeline_probe mixed|stall|many|timeout|late-close PATH [N]\n");
      rc = 2;
    }
  }  // the communicator goes: rank 0 writes the merged timeline
  MPI_Finalize();
  return rc;
}
