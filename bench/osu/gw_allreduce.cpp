// osu_allreduce-style sweep: gradwire's allreduce beside MPI_Allreduce, timed in one run.
#include <mpi.h>

#include <cmath>
#include <vector>

#include <gradwire/communicator.hpp>

#include "args.hpp"
#include "math/element_io.hpp"
#include "report.hpp"
#include "timing.hpp"

namespace {

// Inputs from (rank, index), small enough that integer sums are exact.
double input(int rank, std::size_t i) { return static_cast<double>((rank * 7 + i * 13) % 17) - 8; }

void fill(std::vector<unsigned char>& buf, gradwire::DType t, std::size_t count, int rank);
bool check(const std::vector<unsigned char>& buf, gradwire::DType t, gradwire::ReduceOp op,
           std::size_t count, int size);

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const gwbench::Args args = gwbench::parse(argc, argv, "gw_allreduce", rank);

  int failed = 0;
  try {
    gradwire::Options o;
    o.timeout_s = args.timeout_s;
    gradwire::Communicator comm(MPI_COMM_WORLD, o);
    MPI_Comm base_comm;  // the baseline runs on its own duplicate, as gradwire does
    MPI_Comm_dup(MPI_COMM_WORLD, &base_comm);

    gwbench::Header h;
    h.benchmark = "gw_allreduce";
    h.backend = "mpi";
    h.memory = "host";
    h.codec = "none";
    h.baseline = "MPI_Allreduce";
    h.ranks = size;
    h.nodes = comm.node_count();
    h.rendezvous_s = comm.rendezvous_seconds();
    gwbench::Report report(args, h, rank);
    report.begin();

    const std::size_t esz = gradwire::dtype_size(args.dtype);
    MPI_Datatype base_type = args.dtype == gradwire::DType::Float64   ? MPI_DOUBLE
                             : args.dtype == gradwire::DType::Int32   ? MPI_INT32_T
                             : args.dtype == gradwire::DType::Float32 ? MPI_FLOAT
                                                                      : MPI_DATATYPE_NULL;
    for (std::size_t bytes = args.min_bytes; bytes <= args.max_bytes; bytes *= 2) {
      const std::size_t count = bytes / esz;
      if (count == 0) continue;
      std::vector<unsigned char> send(bytes), recv(bytes), bsend(bytes), brecv(bytes);
      fill(send, args.dtype, count, rank);
      fill(bsend, args.dtype, count, rank);
      const int iters = args.iterations >= 0 ? args.iterations : gwbench::default_iterations(bytes);
      const int warm = args.warmup >= 0 ? args.warmup : gwbench::default_warmup(bytes);
      auto gw = [&] { comm.allreduce(send.data(), recv.data(), count, args.dtype, args.op); };
      // MPI has no 16-bit float type: there the baseline moves the same bytes as MPI_UINT16_T
      // with MPI_MAX, the nearest thing MPI offers.
      auto base = [&] {
        if (base_type != MPI_DATATYPE_NULL) {
          MPI_Op op = args.op == gradwire::ReduceOp::Max ? MPI_MAX
                      : args.op == gradwire::ReduceOp::Min ? MPI_MIN
                      : args.op == gradwire::ReduceOp::Prod ? MPI_PROD : MPI_SUM;
          MPI_Allreduce(bsend.data(), brecv.data(), static_cast<int>(count), base_type, op, base_comm);
        } else {
          MPI_Allreduce(bsend.data(), brecv.data(), static_cast<int>(count), MPI_UINT16_T, MPI_MAX, base_comm);
        }
      };
      const auto b1 = gwbench::time_calls(base_comm, args.blocking, warm, iters / 2, base);
      const auto g1 = gwbench::time_calls(base_comm, args.blocking, warm, iters / 2, gw);
      const auto b2 = gwbench::time_calls(base_comm, args.blocking, 0, iters - iters / 2, base);
      const auto g2 = gwbench::time_calls(base_comm, args.blocking, 0, iters - iters / 2, gw);
      const gwbench::Timing g = gwbench::merge(g1, g2), b = gwbench::merge(b1, b2);

      gwbench::Row row;
      row.bytes = bytes;
      row.avg_us = g.avg_us;
      row.min_us = g.min_us;
      row.max_us = g.max_us;
      row.iterations = g.iterations;
      row.algbw = static_cast<double>(bytes) / (g.avg_us * 1e3);
      row.busbw = row.algbw * 2.0 * (size - 1) / size;  // nccl-tests' allreduce factor
      // A bandwidth-optimal allreduce sends 2(P-1)/P of the buffer from each rank.
      row.wire = static_cast<std::size_t>(2.0 * (size - 1) / size * static_cast<double>(bytes));
      row.base_us = b.avg_us;
      if (args.validate) {
        comm.allreduce(send.data(), recv.data(), count, args.dtype, args.op);
        int ok = check(recv, args.dtype, args.op, count, size) ? 1 : 0;
        MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
        row.validation = ok ? "Pass" : "Fail";
        failed |= !ok;
      }
      report.row(row);
    }
    report.end();
    MPI_Comm_free(&base_comm);
  } catch (const gradwire::Error& e) {
    std::fprintf(stderr, "gw_allreduce: %s\n", e.what());
    failed = 1;
  }
  MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return failed;
}

namespace {

void fill(std::vector<unsigned char>& buf, gradwire::DType t, std::size_t count, int rank) {
  for (std::size_t i = 0; i < count; ++i) gradwire::math::put_element(buf.data(), t, i, input(rank, i));
}

// Small integers: every dtype holds the exact result (16-bit floats too: |sum| <= 8 P), so
// Pass means exact.
bool check(const std::vector<unsigned char>& buf, gradwire::DType t, gradwire::ReduceOp op,
           std::size_t count, int size) {
  using gradwire::ReduceOp;
  for (std::size_t i = 0; i < count; ++i) {
    double want = op == ReduceOp::Prod ? 1 : op == ReduceOp::Min ? INFINITY
                  : op == ReduceOp::Max ? -INFINITY : 0;
    for (int r = 0; r < size; ++r) {
      const double x = input(r, i);
      switch (op) {
        case ReduceOp::Prod: want *= x; break;
        case ReduceOp::Min: want = std::min(want, x); break;
        case ReduceOp::Max: want = std::max(want, x); break;
        default: want += x;
      }
    }
    if (op == ReduceOp::Avg) want = gradwire::is_float(t) ? want / size : std::trunc(want / size);
    const double got = gradwire::math::get_element(buf.data(), t, i);
    // Averages divide (16-bit ones before summing): P+1 roundings of values up to 8 in size.
    const double u = t == gradwire::DType::Float16    ? 0x1.0p-11
                     : t == gradwire::DType::BFloat16 ? 0x1.0p-8
                     : t == gradwire::DType::Float32  ? 0x1.0p-24 : 0x1.0p-53;
    const double tol = op == ReduceOp::Avg && gradwire::is_float(t) ? (size + 1) * 8 * u : 0;
    if (std::fabs(got - want) > tol) return false;
  }
  return true;
}

}  // namespace
