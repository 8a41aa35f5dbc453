#include "collective.hpp"

#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include <gradwire/codec.hpp>
#include <gradwire/communicator.hpp>
#include <gradwire/plan.hpp>

#include "args.hpp"
#include "buffers.hpp"
#include "math/element_io.hpp"
#include "mpi_main.hpp"
#include "progress.hpp"
#include "report.hpp"
#include "timing.hpp"

namespace gwbench {
namespace {

using gradwire::DType;
using gradwire::ReduceOp;

// Inputs from (rank, global index), small integers so that every dtype holds sums exactly.
double input(int rank, std::size_t i) { return static_cast<double>((rank * 7 + i * 13) % 17) - 8; }

struct Desc {
  const char* name;
  const char* mpi_base;
  const char* nccl_base;
  const char* size_note;
  bool reduces;
  bool plans;  // --codec other than none goes through a gradwire::Plan
};

Desc describe(Coll c) {
  switch (c) {
    case Coll::Allreduce:
      return {"gw_allreduce", "MPI_Allreduce", "ncclAllReduce",
              "bytes of the vector each rank reduces; busbw = algbw * 2(P-1)/P", true, true};
    case Coll::Allgather:
      return {"gw_allgather", "MPI_Allgather", "ncclAllGather",
              "bytes each rank contributes (OSU); algbw counts P * Size (nccl-tests), "
              "busbw = algbw * (P-1)/P",
              false, true};
    case Coll::ReduceScatter:
      return {"gw_reduce_scatter", "MPI_Reduce_scatter_block", "ncclReduceScatter",
              "bytes of the whole vector (each rank receives Size/P); busbw = algbw * (P-1)/P",
              true, true};
    case Coll::Bcast:
    default:
      return {"gw_bcast", "MPI_Bcast", "ncclBroadcast",
              "bytes broadcast from rank 0; busbw = algbw", false, false};
  }
}

// Element counts of one row.
struct Shape {
  std::size_t count = 0;       // the count argument of the call
  std::size_t send = 0, recv = 0;  // elements in the send / receive buffers
  double alg_bytes = 0;        // nccl-tests' "size" for algbw
  double bus_factor = 1;
  double dense_wire = 0;       // bytes each rank sends on the engine's bandwidth-optimal path
};

Shape shape(Coll c, std::size_t bytes, std::size_t esz, int P) {
  Shape s;
  const double b = static_cast<double>(bytes), p = P;
  switch (c) {
    case Coll::Allreduce:
      s.count = s.send = s.recv = bytes / esz;
      s.alg_bytes = b;
      s.bus_factor = 2.0 * (p - 1) / p;
      s.dense_wire = 2.0 * (p - 1) / p * b;
      break;
    case Coll::Allgather:
      s.count = s.send = bytes / esz;
      s.recv = s.count * P;
      s.alg_bytes = b * p;
      s.bus_factor = (p - 1) / p;
      s.dense_wire = (p - 1) * b;
      break;
    case Coll::ReduceScatter:
      s.count = s.recv = bytes / esz / P;
      s.send = s.count * P;
      s.alg_bytes = static_cast<double>(s.send * esz);
      s.bus_factor = (p - 1) / p;
      s.dense_wire = (p - 1) / p * s.alg_bytes;
      break;
    case Coll::Bcast:
      s.count = s.send = s.recv = bytes / esz;
      s.alg_bytes = b;
      s.bus_factor = 1;
      s.dense_wire = (p - 1) / p * b;  // mean over ranks: P-1 copies leave the tree in all
      break;
  }
  return s;
}

void fill(std::vector<unsigned char>& h, DType t, std::size_t count, int rank) {
  h.assign(count * gradwire::dtype_size(t), 0);
  for (std::size_t i = 0; i < count; ++i) gradwire::math::put_element(h.data(), t, i, input(rank, i));
}

double reduce_ref(ReduceOp op, DType t, int P, std::size_t gi) {
  double want = op == ReduceOp::Prod ? 1 : op == ReduceOp::Min ? INFINITY : op == ReduceOp::Max ? -INFINITY : 0;
  for (int r = 0; r < P; ++r) {
    const double x = input(r, gi);
    switch (op) {
      case ReduceOp::Prod: want *= x; break;
      case ReduceOp::Min: want = std::min(want, x); break;
      case ReduceOp::Max: want = std::max(want, x); break;
      default: want += x;
    }
  }
  if (op == ReduceOp::Avg) want = gradwire::is_float(t) ? want / P : std::trunc(want / P);
  return want;
}

// Expected element i of this rank's result.
double expected(Coll c, ReduceOp op, DType t, int P, int rank, const Shape& s, std::size_t i) {
  switch (c) {
    case Coll::Allreduce: return reduce_ref(op, t, P, i);
    case Coll::Allgather: return input(static_cast<int>(i / s.count), i % s.count);
    case Coll::ReduceScatter: return reduce_ref(op, t, P, rank * s.count + i);
    case Coll::Bcast:
    default: return input(0, i);
  }
}

// Max |got - want| over the result, and max |want|.
struct Error {
  double max_abs = 0, max_ref = 0;
  bool finite = true;
};

Error compare(const std::vector<unsigned char>& h, Coll c, ReduceOp op, DType t, int P, int rank,
              const Shape& s) {
  Error e;
  for (std::size_t i = 0; i < s.recv; ++i) {
    const double want = expected(c, op, t, P, rank, s, i);
    const double got = gradwire::math::get_element(h.data(), t, i);
    if (!std::isfinite(got)) e.finite = false;
    e.max_abs = std::max(e.max_abs, std::fabs(got - want));
    e.max_ref = std::max(e.max_ref, std::fabs(want));
  }
  return e;
}

std::uint64_t fnv(const std::vector<unsigned char>& h, std::size_t n) {
  std::uint64_t x = 1469598103934665603ull;
  for (std::size_t i = 0; i < n; ++i) x = (x ^ h[i]) * 1099511628211ull;
  return x;
}

// Whether every rank holds the same first n bytes.
bool same_on_all(const std::vector<unsigned char>& h, std::size_t n, MPI_Comm comm) {
  std::uint64_t lo = fnv(h, n), hi = lo;
  MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UINT64_T, MPI_MIN, comm);
  MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UINT64_T, MPI_MAX, comm);
  return lo == hi;
}

[[maybe_unused]] double mean_over_ranks(double v, MPI_Comm comm) {
  int P = 1;
  MPI_Comm_size(comm, &P);
  MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_DOUBLE, MPI_SUM, comm);
  return v / P;
}

// Dense tolerance: avg divides (16-bit types before summing): P+1 roundings of values <= 8.
double dense_tolerance(ReduceOp op, DType t, int P) {
  const double u = t == DType::Float16 ? 0x1.0p-11 : t == DType::BFloat16 ? 0x1.0p-8
                   : t == DType::Float32 ? 0x1.0p-24 : 0x1.0p-53;
  return op == ReduceOp::Avg && gradwire::is_float(t) ? (P + 1) * 8 * u : 0;
}

std::string fmt_err(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.2e", v);
  return b;
}

int run(int argc, char** argv, Coll coll, int rank, int P) {
  const Desc d = describe(coll);
  const Args args = parse(argc, argv, d.name, rank);
  const std::vector<CodecChoice> choices = codec_choices(args);

  // Argument errors every rank sees alike: report once, exit 2 everywhere.
  std::string bad;
  for (const CodecChoice& c : choices) {
    bad = codec_spec_error(c);
    if (!bad.empty()) break;
    if (c.dense() || c.control()) continue;
    if (coll == Coll::ReduceScatter && gradwire::parse_codec(c.spec).sparse()) {
      bad = "--codec " + c.label + ": reduce-scatter plans take dense codecs (none, fp16, bf16, "
            "q1-q8, sign)";
      break;
    }
    if (!d.plans) {
      bad = "--codec " + c.label + ": " + d.name +
            " runs the dense engine collective only; compressed plans exist for gw_allreduce, "
            "gw_allgather and gw_reduce_scatter";
      break;
    }
  }
  if (!bad.empty()) {
    if (rank == 0) std::fprintf(stderr, "%s: %s\n", d.name, bad.c_str());
    return 2;
  }
  const bool device = args.device == "cuda";
  if (device) {
    const std::string why = device_unavailable(args.backend);
    if (!why.empty()) {
      if (rank == 0) std::fprintf(stderr, "%s: skipped: -d cuda: %s\n", d.name, why.c_str());
      return kSkip;
    }
  }

  gradwire::Options o;
  o.timeout_s = args.timeout_s;
  // Device runs set gradwire's GPU up front (it makes that GPU current), so the baseline's
  // NCCL communicator and the buffers below live on the same GPU as gradwire's.
  // Where that cannot be (e.g. two ranks on one GPU), every rank gets the same error: skip.
  if (device) o.device_setup = gradwire::Options::DeviceSetup::Eager;
  std::unique_ptr<gradwire::Communicator> made;
  try {
    made = std::make_unique<gradwire::Communicator>(MPI_COMM_WORLD, o);
  } catch (const gradwire::Error& e) {
    if (!device || e.code() == gradwire::ErrorCode::Timeout) throw;
    if (rank == 0) std::fprintf(stderr, "%s: skipped: -d cuda: %s\n", d.name, e.what());
    return kSkip;
  }
  gradwire::Communicator& comm = *made;
  Engine engine(MPI_COMM_WORLD, args.backend, device);
  Watchdog wd(d.name, args.timeout_s, rank);
  const gradwire::Memory mem = device ? gradwire::Memory::Device : gradwire::Memory::Host;

  Header h;
  h.benchmark = d.name;
  h.backend = args.backend;
  h.memory = args.device;
  for (std::size_t i = 0; i < choices.size(); ++i) h.codec += (i ? ", " : "") + choices[i].label;
  if (!args.codecs.empty()) {
    h.codec += std::string("   Algo: ") + args.algo + "   EF: " + (args.ef ? "on" : "off");
  }
  h.baseline = engine.name(d.mpi_base, d.nccl_base);
  h.size_note = d.size_note;
  h.uses_op = d.reduces;
  h.ranks = P;
  h.nodes = comm.node_count();
  h.rendezvous_s = comm.rendezvous_seconds();
  Report report(args, h, rank);
  report.begin();

  const DType t = args.dtype;
  const std::size_t esz = gradwire::dtype_size(t);
  const Shape top = shape(coll, args.max_bytes, esz, P);
  std::vector<unsigned char> host;
  fill(host, t, std::max(top.send, top.recv), rank);
  // One output buffer for the baseline and every row, so that where a buffer lies in memory
  // is no part of a ratio.
  Buffer send(top.send * esz, device), gout(top.recv * esz, device);
  {
    std::vector<unsigned char> s(host.begin(), host.begin() + static_cast<std::ptrdiff_t>(top.send * esz));
    send.upload(s);
  }
  if (coll == Coll::Bcast) {  // in place: rank 0 broadcasts its input
    std::vector<unsigned char> s(host.begin(), host.begin() + static_cast<std::ptrdiff_t>(top.recv * esz));
    gout.upload(s);
  }
  const int root = 0;
  int failed = 0;

  auto gw_dense = [&](const Shape& s) {
    switch (coll) {
      case Coll::Allreduce: comm.allreduce(send.data(), gout.data(), s.count, t, args.op, mem); break;
      case Coll::Allgather: comm.allgather(send.data(), gout.data(), s.count, t, mem); break;
      case Coll::ReduceScatter: comm.reduce_scatter(send.data(), gout.data(), s.count, t, args.op, mem); break;
      case Coll::Bcast: comm.broadcast(gout.data(), s.count, t, root, mem); break;
    }
  };
  auto base_call = [&](const Shape& s) {
    switch (coll) {
      case Coll::Allreduce: engine.allreduce(send.data(), gout.data(), s.count, t, args.op); break;
      case Coll::Allgather: engine.allgather(send.data(), gout.data(), s.count, t); break;
      case Coll::ReduceScatter: engine.reduce_scatter(send.data(), gout.data(), s.count, t, args.op); break;
      case Coll::Bcast: engine.bcast(gout.data(), s.count, t, root); break;
    }
  };
  // Validation of gout after one call of gradwire's path; `exact` paths print Pass/Fail.
  // The baseline wrote the right result into gout: it is overwritten with NaN first (but for
  // the root's broadcast input), so a call that writes nothing cannot pass.
  auto validate = [&](const Shape& s, bool exact, Row& row, double tol, auto&& call) {
    if (coll != Coll::Bcast || rank != root)
      gout.upload(std::vector<unsigned char>(s.recv * esz, 0xff));
    call();
    std::vector<unsigned char> got;
    gout.download(got);
    const Error e = compare(got, coll, args.op, t, P, rank, s);
    const bool agree = coll == Coll::ReduceScatter ? true : same_on_all(got, s.recv * esz, comm.mpi_comm());
    double rel = e.max_ref > 0 ? e.max_abs / e.max_ref : e.max_abs;
    if (!e.finite) rel = INFINITY;
    MPI_Allreduce(MPI_IN_PLACE, &rel, 1, MPI_DOUBLE, MPI_MAX, comm.mpi_comm());
    int ok = agree && std::isfinite(rel) && (!exact || rel <= tol) ? 1 : 0;
    MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, comm.mpi_comm());
    row.max_rel_err = rel;
    if (exact) {
      row.validation = ok ? "Pass" : "Fail";
    } else {
      row.validation = ok ? fmt_err(rel) : (agree ? "Fail(err)" : "Fail(ranks)");
    }
    failed |= !ok;
  };

  int nsizes = 0;
  double weight = 0;
  for (std::size_t bytes = args.min_bytes; bytes <= args.max_bytes; bytes *= 2)
    ++nsizes, weight += static_cast<double>(bytes) * static_cast<double>(2 * choices.size() + 1);
  Progress progress(rank, weight);
  int size_index = 0;
  for (std::size_t bytes = args.min_bytes; bytes <= args.max_bytes; bytes *= 2) {
    ++size_index;
    const Shape s = shape(coll, bytes, esz, P);
    if (s.count == 0) continue;
    const int iters = args.iterations >= 0 ? args.iterations : default_iterations(bytes);
    const int warm = args.warmup >= 0 ? args.warmup : default_warmup(bytes);
    const std::string what_base = h.baseline + " of " + std::to_string(bytes) + " B";
    const std::string what_gw = std::string(d.name) + " of " + std::to_string(bytes) + " B";

    auto make_row = [&](const Timing& g, const Timing& b, const CodecChoice& c) {
      Row row;
      row.bytes = bytes;
      row.avg_us = g.avg_us;
      row.min_us = g.min_us;
      row.max_us = g.max_us;
      row.iterations = g.iterations;
      row.algbw = g.avg_us > 0 ? s.alg_bytes / (g.avg_us * 1e3) : 0;
      row.busbw = row.algbw * s.bus_factor;
      row.wire = static_cast<std::size_t>(s.dense_wire);
      row.base_us = b.avg_us;
      row.base_p50_us = spread(b.times_us).p50_us;
      row.codec = c.label;
      row.algorithm = h.baseline;
      row.set_spread(spread(g.times_us));
      return row;
    };

    // Plans are made before the timing: "auto" runs its trial at creation.
    std::vector<std::unique_ptr<gradwire::Plan>> plans(choices.size());
    for (std::size_t k = 0; k < choices.size(); ++k) {
      const CodecChoice& c = choices[k];
      if (c.dense() || c.control()) continue;
      gradwire::PlanConfig cfg;
      cfg.collective = coll == Coll::Allgather       ? gradwire::PlanCollective::Allgather
                       : coll == Coll::ReduceScatter ? gradwire::PlanCollective::ReduceScatter
                                                     : gradwire::PlanCollective::Allreduce;
      cfg.count = s.count;
      cfg.dtype = t;
      cfg.op = args.op;
      cfg.codec = c.spec;
      cfg.algorithm = c.algo;
      cfg.error_feedback = c.ef;
      cfg.seed = 12345;
      cfg.memory = mem;
      wd.arm(what_gw + " (plan " + c.label + ")");
      // +overlap: the chunked pipelines (collectives/overlap.hpp), read when the plan is made.
      const char* was = std::getenv("GRADWIRE_OVERLAP");
      const std::string saved = was ? was : "";
      if (c.overlap) setenv("GRADWIRE_OVERLAP", "1", 1);
      plans[k] = std::make_unique<gradwire::Plan>(comm, cfg);
      plans[k]->set_label(c.label + ", " + std::to_string(bytes) + " B");  // the row, on a timeline
      if (c.overlap && was) {
        setenv("GRADWIRE_OVERLAP", saved.c_str(), 1);
      } else if (c.overlap) {
        unsetenv("GRADWIRE_OVERLAP");
      }
    }

    // Up to 10 rounds. In each, every row is timed between two blocks of the baseline
    // (B r1 B r2 ... B rn B, the rows' order reversed every other round) and compared with
    // those two blocks only. So a row and its baseline always follow a block of the other kind
    // (neither runs right after itself, on warm buffers), and drift within a round falls on
    // both alike. With one baseline block per round, MPI_Allreduce timed as a row read 0.94x
    // of itself from 1 MB up (bench/results/bench-fairness, auto-never-loses.md).
    const int rounds = std::max(1, std::min(iters, 10));
    progress.at(size_index, nsizes, bytes, 0, static_cast<int>(choices.size()),
                "baseline and every codec");
    std::vector<Timing> base(choices.size()), timed(choices.size());  // base: each row's own
    // Per round: the mean of the row's two baseline blocks and the row's, for a paired ratio
    // that a burst of outside load in one round cannot move much (the median over rounds).
    std::vector<std::vector<double>> base_round(choices.size()), choice_round(choices.size());
    // Plans: the sums of their timed runs' split (per rank), how many runs were timed (an auto
    // plan running dense times only the runs its decisions need: PlanStats), and the last
    // run's wire bytes.
    std::vector<double> enc(choices.size()), xfer(choices.size()), dec(choices.size()),
        timed_runs(choices.size()), wire(choices.size()), pcie(choices.size());
    for (int r = 0; r < rounds; ++r) {
      const int n = iters / rounds + (r < iters % rounds ? 1 : 0);
      const int w = r == 0 ? warm : 0;
      auto time_base = [&](int warmup) {
        wd.arm(what_base);
        return time_calls(engine.comm(), args.blocking, warmup, n, [&] { base_call(s); });
      };
      auto time_choice = [&](std::size_t k) {
        if (choices[k].control()) {
          wd.arm(what_base);
          return time_calls(engine.comm(), args.blocking, w, n, [&] { base_call(s); });
        }
        if (choices[k].dense()) {
          wd.arm(what_gw);
          return time_calls(engine.comm(), args.blocking, w, n, [&] { gw_dense(s); });
        }
        wd.arm(what_gw + " (plan " + choices[k].label + ")");
        gradwire::Plan& plan = *plans[k];
        for (int i = 0; i < w; ++i) plan.run(send.data(), gout.data());
        auto add_stats = [&] {
          const gradwire::PlanStats& st = plan.stats();
          if (st.total_s > 0) ++timed_runs[k];
          enc[k] += st.encode_s;
          xfer[k] += st.transfer_s;
          dec[k] += st.decode_s;
          wire[k] = static_cast<double>(st.wire_bytes);
          pcie[k] = static_cast<double>(st.pcie_bytes);
        };
        return time_calls(engine.comm(), args.blocking, 0, n,
                          [&] { plan.run(send.data(), gout.data()); }, add_stats);
      };
      Timing before = time_base(w);
      for (std::size_t i = 0; i < choices.size(); ++i) {
        const std::size_t k = r % 2 == 0 ? i : choices.size() - 1 - i;
        const Timing x = time_choice(k);
        const Timing after = time_base(0);
        base[k] = merge(merge(base[k], before), after);
        if (x.iterations > 0) {
          base_round[k].push_back((before.avg_us + after.avg_us) / 2);
          choice_round[k].push_back(x.avg_us);
        }
        timed[k] = merge(timed[k], x);
        before = after;
      }
    }
    wd.disarm();
    progress.done(static_cast<double>(bytes) * static_cast<double>(2 * choices.size() + 1));

    for (std::size_t k = 0; k < choices.size(); ++k) {
      const CodecChoice& c = choices[k];
      Row row = make_row(timed[k], base[k], c);
      std::vector<double> ratio;
      for (std::size_t r = 0; r < base_round[k].size() && r < choice_round[k].size(); ++r)
        if (choice_round[k][r] > 0) ratio.push_back(base_round[k][r] / choice_round[k][r]);
      if (!ratio.empty()) {
        std::sort(ratio.begin(), ratio.end());
        const std::size_t m = ratio.size() / 2;
        row.paired_vs_base = ratio.size() % 2 ? ratio[m] : (ratio[m - 1] + ratio[m]) / 2;
      }
      if (c.control()) {
        report.row(row);
        continue;
      }
      if (c.dense()) {
        if (args.validate) {
          wd.arm(what_gw);
          validate(s, true, row, dense_tolerance(args.op, t, P), [&] { gw_dense(s); });
          wd.disarm();
        }
        report.row(row);
        continue;
      }
      gradwire::Plan& plan = *plans[k];
      wd.arm(what_gw + " (plan " + c.label + ")");
      if (iters == 0) {
        plan.run(send.data(), gout.data());
        wire[k] = static_cast<double>(plan.stats().wire_bytes);
      }
      const double n = std::max(1.0, timed_runs[k]);
      row.wire = static_cast<std::size_t>(std::llround(mean_over_ranks(wire[k], comm.mpi_comm())));
      row.encode_us = mean_over_ranks(enc[k] / n * 1e6, comm.mpi_comm());
      row.transfer_us = mean_over_ranks(xfer[k] / n * 1e6, comm.mpi_comm());
      row.decode_us = mean_over_ranks(dec[k] / n * 1e6, comm.mpi_comm());
      const gradwire::PlanStats& st = plan.stats();
      row.algorithm = st.algorithm;
      row.transport = st.transport;
      row.executor = st.executor;
      row.pcie_bytes = mean_over_ranks(pcie[k], comm.mpi_comm());
      if (st.predicted_s > 0) row.predicted_us = st.predicted_s * 1e6;
      // "auto": why the last run's algorithm ran, the switches, both candidates' figures.
      row.decision = st.decision;
      row.switches = st.switches;
      if (st.predicted_dense_s > 0) row.predicted_dense_us = st.predicted_dense_s * 1e6;
      if (st.predicted_compressed_s > 0)
        row.predicted_compressed_us = st.predicted_compressed_s * 1e6;
      if (st.measured_dense_s > 0) row.measured_dense_us = st.measured_dense_s * 1e6;
      if (st.measured_compressed_s > 0)
        row.measured_compressed_us = st.measured_compressed_s * 1e6;
      if (args.validate) {
        // One step from a clean residual: the error of a single compressed call.
        plan.reset_residual();
        const bool lossless = c.spec == "none";
        validate(s, lossless, row, lossless ? 1e-6 : 0, [&] { plan.run(send.data(), gout.data()); });
      }
      wd.disarm();
      report.row(row);
    }
  }
  report.end();
  return failed;
}

}  // namespace

int run_collective(int argc, char** argv, Coll coll) {
  return mpi_main(argc, argv, describe(coll).name,
                  [&](int rank, int size) { return run(argc, argv, coll, rank, size); });
}

}  // namespace gwbench
