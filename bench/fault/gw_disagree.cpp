// One disagreement case per run (bench/fault/disagree.sh): rank 0 calls one thing, the other
// ranks another. Each rank prints one line: its outcome (ok with a checksum of its result, or
// the gradwire error code and message), so the table shows who returned what.
//   gw_disagree CASE   (GRADWIRE_CHECK and GRADWIRE_TIMEOUT from the environment; the
//                       policy is return, so every rank reports)
#include <mpi.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <gradwire/communicator.hpp>
#include <gradwire/plan.hpp>

using gradwire::DType;
using gradwire::ReduceOp;

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  const std::string c = argc > 1 ? argv[1] : "";
  gradwire::Options o;
  o.on_timeout = gradwire::Options::Policy::Return;
  std::string outcome;
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  // Buffers are leaked on purpose: after a timeout MPI may still write them.
  auto* buf = new std::vector<double>(2 * 65538 + 16, 1.0 + rank);
  void* b = buf->data();
  const bool r0 = rank == 0;
  try {
    gradwire::Communicator comm(MPI_COMM_WORLD, o);
    if (c == "f32-vs-i32") comm.allreduce(b, b, 7, r0 ? DType::Float32 : DType::Int32, ReduceOp::Sum);
    else if (c == "f32-vs-f16") comm.allreduce(b, b, 7, r0 ? DType::Float32 : DType::Float16, ReduceOp::Sum);
    else if (c == "f32-vs-f64") comm.allreduce(b, b, 7, r0 ? DType::Float32 : DType::Float64, ReduceOp::Sum);
    else if (c == "sum-vs-max") comm.allreduce(b, b, 7, DType::Float32, r0 ? ReduceOp::Sum : ReduceOp::Max);
    else if (c == "root0-vs-root1") comm.broadcast(b, 7, DType::Float32, r0 ? 0 : 1);
    else if (c == "count7-vs-8") comm.allreduce(b, b, r0 ? 7 : 8, DType::Float32, ReduceOp::Sum);
    else if (c == "count65537-vs-65538") comm.allreduce(b, b, r0 ? 65537 : 65538, DType::Float32, ReduceOp::Sum);
    else if (c == "icount65537-vs-65538") comm.iallreduce(b, b, r0 ? 65537 : 65538, DType::Float32, ReduceOp::Sum).wait();
    else if (c == "plan-vs-dense") {
      if (r0) {
        gradwire::PlanConfig cfg;
        cfg.count = 1000;
        cfg.codec = "q8";
        gradwire::Plan p(comm, cfg);
      } else {
        comm.allreduce(b, b, 1000, DType::Float32, ReduceOp::Sum);
      }
    } else {
      std::fprintf(stderr, "unknown case '%s'\n", c.c_str());
      MPI_Abort(MPI_COMM_WORLD, 2);
    }
    // A checksum of the first bytes: ranks that "succeeded" with different results differ.
    unsigned sum = 0;
    const auto* p = static_cast<const unsigned char*>(b);
    for (int i = 0; i < 56; ++i) sum = sum * 31 + p[i];
    char text[64];
    std::snprintf(text, sizeof text, "ok result %08x", sum);
    outcome = text;
  } catch (const gradwire::Error& e) {
    outcome = std::string(gradwire::error_code_name(e.code())) + ": " + e.what();
  }
  std::printf("gw_disagree %s rank %d: %s\n", c.c_str(), rank, outcome.c_str());
  std::fflush(stdout);
  // Every rank reports before any ends (mpirun ends the job when one leaves early); a rank
  // whose peers never come (they hang in MPI) gives up after 10 s.
  MPI_Request r;
  MPI_Ibarrier(MPI_COMM_WORLD, &r);
  int done = 0;
  for (const double t0 = MPI_Wtime(); !done && MPI_Wtime() - t0 < 10;) MPI_Test(&r, &done, MPI_STATUS_IGNORE);
  std::_Exit(0);
}
