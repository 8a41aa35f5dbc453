// Compressed allreduce plans at every communicator size: every rank ends with the same bits,
// and each element is within the documented bound of the exact float64 sum
// (docs/compressed-collectives.md; the bounds are computed in plan_bounds.hpp).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <gradwire/codec.hpp>
#include <gradwire/communicator.hpp>
#include <gradwire/plan.hpp>

#include "inputs.hpp"
#include "plan_bounds.hpp"
#include "plan_inputs.hpp"

using gradwire::Communicator;
using gradwire::DType;
using gradwire::Plan;
using gradwire::PlanConfig;
using gradwire::ReduceOp;
using gwplan::identical_everywhere;
using gwplan::input;
using gwplan::inputs_of;
using gwplan::Mismatch;
using gwplan::Vec;

namespace {

const std::size_t kCounts[] = {0, 1, 13, 131, 1031, 5003};




struct Case {
  std::string algorithm, codec;
};

// The bound of `c` for inputs generated with `seed` on `P` ranks (node layout for hier).
Vec bound_of(const Case& c, const Communicator& comm, std::uint64_t seed, std::size_t n,
             ReduceOp op, Vec* exact) {
  const int P = comm.size();
  const gradwire::Codec codec = gradwire::make_codec(c.codec);
  std::vector<std::vector<float>> xs;
  std::vector<Vec> xd;
  for (int r = 0; r < P; ++r) {
    xs.push_back(inputs_of(seed, r, n));
    xd.emplace_back(xs.back().begin(), xs.back().end());
  }
  Vec S(n, 0);
  for (const Vec& v : xd)
    for (std::size_t i = 0; i < n; ++i) S[i] += v[i];
  Vec B;
  std::string algo = c.algorithm;
  if (algo == "auto") algo = codec.sparse() ? "sparse-allgather" : "sra";
  if (algo == "sra") {
    B = gwplan::sra_bound(codec, xd, std::vector<Vec>(P, Vec(n, 0.0)), op == ReduceOp::Avg ? P : 1);
  } else if (algo == "shared-grid") {
    B = gwplan::shared_grid_bound(codec, xd);
  } else if (algo == "sparse-allgather") {
    B = gwplan::sparse_bound(codec, xs);
  } else if (algo == "hier") {
    // Which node each rank is on, and how many ranks each node has (the last may be short).
    const int nodes = comm.node_count();
    std::vector<int> node_of(P), local(nodes, 0);
    int mine = comm.node();
    MPI_Allgather(&mine, 1, MPI_INT, node_of.data(), 1, MPI_INT, comm.mpi_comm());
    for (int r = 0; r < P; ++r) ++local[node_of[r]];
    std::vector<Vec> nsum(nodes, Vec(n, 0)), delta(nodes, Vec(n, 0));
    for (int r = 0; r < P; ++r)
      for (std::size_t i = 0; i < n; ++i) {
        const int k = node_of[r];
        nsum[k][i] += xd[r][i];
        delta[k][i] += (local[k] - 1) * gwplan::kU * std::fabs(xd[r][i]);
      }
    for (int k = 0; k < nodes; ++k)
      for (std::size_t i = 0; i < n; ++i) delta[k][i] += gwplan::kU * std::fabs(nsum[k][i]);
    B = gwplan::sra_bound(codec, nsum, delta, 1);
  }
  if (op == ReduceOp::Avg && algo != "sra") {
    for (std::size_t i = 0; i < n; ++i) B[i] = gwplan::avg_of(B[i], S[i], P);
  }
  if (op == ReduceOp::Avg)
    for (double& s : S) s /= P;
  *exact = S;
  return B;
}

void check_case(Communicator& comm, const Case& c, ReduceOp op, bool in_place,
                bool nonblocking) {
  const int P = comm.size(), me = comm.rank();
  for (std::size_t n : kCounts) {
    const std::uint64_t seed = 1000 + n;
    PlanConfig cfg;
    cfg.count = n;
    cfg.op = op;
    cfg.codec = c.codec;
    cfg.algorithm = c.algorithm;
    cfg.error_feedback = false;
    cfg.seed = 7;
    Plan plan(comm, cfg);
    std::vector<float> x = inputs_of(seed, me, n), out(n, -1.0f);
    float* recv = in_place ? x.data() : out.data();
    if (nonblocking) {
      gradwire::Request r = plan.start(x.data(), recv);
      r.wait();
    } else {
      plan.run(x.data(), recv);
    }
    Vec exact;
    const Vec B = bound_of(c, comm, seed, n, op, &exact);
    Mismatch m;
    for (std::size_t i = 0; i < n; ++i) m.check(i, recv[i], exact[i], B[i]);
    const std::string what = c.algorithm + " " + c.codec + " P=" + std::to_string(P) +
                             " n=" + std::to_string(n) + (op == ReduceOp::Avg ? " avg" : " sum");
    EXPECT_EQ(m.count, 0u) << what << ": " << m.first;
    EXPECT_TRUE(identical_everywhere(recv, n * sizeof(float))) << what << ": ranks differ";
    EXPECT_EQ(plan.stats().logical_bytes, n * 4) << what;
    EXPECT_GE(plan.stats().total_s, plan.stats().encode_s) << what;
  }
}

TEST(PlanAllreduce, SraWithinBound) {
  Communicator comm(MPI_COMM_WORLD);
  for (const char* codec : {"q4", "q8:round=nearest", "q2:bucket=64", "fp16", "bf16", "none",
                            "q4:scale=absmax", "sign:bucket=64"}) {
    check_case(comm, {"sra", codec}, ReduceOp::Sum, false, false);
  }
  check_case(comm, {"sra", "q4"}, ReduceOp::Avg, true, false);
  check_case(comm, {"sra", "q8"}, ReduceOp::Avg, false, true);
}

TEST(PlanAllreduce, SharedGridWithinBound) {
  Communicator comm(MPI_COMM_WORLD);
  for (const char* codec : {"q4", "q8:round=nearest", "q1:bucket=64", "q4:scale=absmax"})
    check_case(comm, {"shared-grid", codec}, ReduceOp::Sum, false, false);
  check_case(comm, {"shared-grid", "q4"}, ReduceOp::Avg, true, true);
}

TEST(PlanAllreduce, SparseWithinBound) {
  Communicator comm(MPI_COMM_WORLD);
  // topk:0.4 makes the union denser than the crossover: the dense switch is exercised too.
  for (const char* codec : {"topk:0.05", "topk:0.4", "topk:k=3,index=delta", "threshold:2.5",
                            "topk:0.1,value=f16"})
    check_case(comm, {"sparse-allgather", codec}, ReduceOp::Sum, false, false);
  check_case(comm, {"sparse-allgather", "topk:0.05"}, ReduceOp::Avg, true, true);
}

TEST(PlanAllreduce, RandomKIsExactOnTheChosenElements) {
  Communicator comm(MPI_COMM_WORLD);
  const int P = comm.size(), me = comm.rank();
  for (std::size_t n : kCounts) {
    PlanConfig cfg;
    cfg.count = n;
    cfg.codec = "randk:0.25";
    cfg.algorithm = "sparse-allgather";
    cfg.error_feedback = false;
    cfg.seed = 99;
    Plan plan(comm, cfg);
    std::vector<float> x = inputs_of(5, me, n), out(n);
    plan.run(x.data(), out.data());  // step 0
    const auto chosen = gradwire::randk_indices(0.25, 99, 0, 0, n);
    std::vector<char> is(n, 0);
    for (auto i : chosen) is[i] = 1;
    Mismatch m;
    for (std::size_t i = 0; i < n; ++i) {
      double S = 0, A = 0;
      for (int r = 0; r < P; ++r) {
        S += input(5, r, i);
        A += std::fabs(input(5, r, i));
      }
      if (is[i]) m.check(i, out[i], S, (P - 1) * gwplan::kU * A);
      else m.check(i, out[i], 0.0, 0.0);
    }
    EXPECT_EQ(m.count, 0u) << "n=" << n << ": " << m.first;
    EXPECT_TRUE(identical_everywhere(out.data(), n * 4));
  }
}

TEST(PlanAllreduce, HierarchicalWithinBound) {
  // Two ranks per node acted out on one host (blocks of ranks_per_node).
  gradwire::Options o;
  o.ranks_per_node = 2;
  Communicator comm(MPI_COMM_WORLD, o);
  for (const char* codec : {"q4", "q8:round=nearest", "fp16"}) {
    check_case(comm, {"hier", codec}, ReduceOp::Sum, false, false);
  }
  check_case(comm, {"hier", "q4"}, ReduceOp::Avg, true, true);
  PlanConfig cfg;
  cfg.count = 10;
  cfg.codec = "q4";
  Plan plan(comm, cfg);
  const bool expect_hier = comm.node_count() > 1 && comm.node_count() < comm.size();
  // One node: "auto" asks the cost model (dense or sra); several: hier, by rule.
  if (expect_hier) {
    EXPECT_EQ(plan.stats().algorithm, "hier");
  } else {
    EXPECT_TRUE(plan.stats().algorithm == "sra" || plan.stats().algorithm == "dense");
  }
}

TEST(PlanAllreduce, DenseSixteenBitGoesThroughTheEngine) {
  Communicator comm(MPI_COMM_WORLD);
  const int P = comm.size(), me = comm.rank();
  for (DType t : {DType::Float16, DType::BFloat16}) {
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Avg}) {
      const std::size_t n = 1031;
      std::vector<std::uint16_t> x(n), out(n);
      for (std::size_t i = 0; i < n; ++i) gwtest::put(x.data(), t, i, gwtest::value(t, op, 3, me, i));
      PlanConfig cfg;
      cfg.count = n;
      cfg.dtype = t;
      cfg.op = op;
      Plan plan(comm, cfg);
      EXPECT_EQ(plan.stats().algorithm, "dense");
      plan.run(x.data(), out.data());
      // The engine's bound (docs/collectives.md): P-1 roundings of partial sums, plus the
      // pre-division of averages. (Not bit-equal to comm.allreduce: MPI's blocking and
      // non-blocking allreduce may add in different orders.)
      Mismatch m;
      const double u = gwtest::unit_roundoff(t);
      for (std::size_t i = 0; i < n; ++i) {
        double S = 0, A = 0;
        for (int r = 0; r < P; ++r) {
          S += gwtest::value(t, op, 3, r, i);
          A += std::fabs(gwtest::value(t, op, 3, r, i));
        }
        if (op == ReduceOp::Avg) m.check(i, gwtest::get(out.data(), t, i), S / P, (P + 2) * u * A / P);
        else m.check(i, gwtest::get(out.data(), t, i), S, (P + 1) * u * A);
      }
      EXPECT_EQ(m.count, 0u) << gradwire::dtype_name(t) << ": " << m.first;
      EXPECT_TRUE(identical_everywhere(out.data(), n * 2));
    }
  }
}

TEST(PlanAllreduce, ErrorFeedbackTracksTheRunningSum) {
  gradwire::Options o;
  o.ranks_per_node = 2;
  Communicator comm(MPI_COMM_WORLD, o);
  const int P = comm.size(), me = comm.rank();
  const std::size_t n = 3001;
  for (const Case& c : {Case{"sra", "q4:round=nearest"}, Case{"shared-grid", "q4:round=nearest"},
                        Case{"hier", "q4:round=nearest"}, Case{"sra", "q8"}}) {
    PlanConfig cfg;
    cfg.count = n;
    cfg.codec = c.codec;
    cfg.algorithm = c.algorithm;
    cfg.error_feedback = true;
    Plan plan(comm, cfg);
    Vec run_out(n, 0), run_exact(n, 0);
    double worst = 0;
    std::vector<float> x(n), out(n);
    for (int step = 0; step < 50; ++step) {
      for (std::size_t i = 0; i < n; ++i) x[i] = input(500 + step, me, i);
      plan.run(x.data(), out.data());
      for (std::size_t i = 0; i < n; ++i) {
        run_out[i] += out[i];
        for (int r = 0; r < P; ++r) run_exact[i] += input(500 + step, r, i);
        worst = std::max(worst, std::fabs(run_out[i] - run_exact[i]));
      }
    }
    // Inputs lie in [-4, 4): the residuals (one per rank and, for sra/hier, one per owned
    // chunk) stay within a step of their grids whatever the step count: 0.8 P + 0.1 holds
    // them with room (docs/compressed-collectives.md, "Error feedback").
    EXPECT_LE(worst, 0.8 * P + 0.1) << c.algorithm << " " << c.codec;
    EXPECT_EQ(plan.step(), 50u);
  }
}

TEST(PlanAllreduce, DisagreeingPlansAreRejectedOnEveryRank) {
  Communicator comm(MPI_COMM_WORLD);
  const int P = comm.size(), me = comm.rank();
  if (P < 2) GTEST_SKIP() << "needs two ranks";
  struct Variant {
    const char* field;
    void (*apply)(PlanConfig&);
  };
  const Variant variants[] = {
      {"count", [](PlanConfig& c) { c.count += 1; }},
      {"dtype", [](PlanConfig& c) { c.dtype = DType::Float16; }},
      {"codec", [](PlanConfig& c) { c.codec = "q8"; }},
      {"algorithm", [](PlanConfig& c) { c.algorithm = "shared-grid"; }},
      {"op", [](PlanConfig& c) { c.op = ReduceOp::Avg; }},
      // One rank pipelining alone would wait on the others (collectives/overlap.hpp).
      {"GRADWIRE_OVERLAP", [](PlanConfig&) { setenv("GRADWIRE_OVERLAP", "1", 1); }},
  };
  for (const Variant& v : variants) {
    PlanConfig cfg;
    cfg.count = 100;
    cfg.codec = "q4";
    cfg.algorithm = "sra";
    if (me == P - 1) v.apply(cfg);
    int code = 0;
    std::string msg;
    try {
      Plan plan(comm, cfg);
    } catch (const gradwire::Error& e) {
      code = static_cast<int>(e.code());
      msg = e.what();
    }
    unsetenv("GRADWIRE_OVERLAP");
    EXPECT_EQ(code, static_cast<int>(gradwire::ErrorCode::Mismatch)) << v.field << ": " << msg;
    EXPECT_NE(msg.find(v.field), std::string::npos) << msg;
  }
  // A spec only one rank rejects: every rank fails, none waits.
  PlanConfig cfg;
  cfg.count = 10;
  cfg.codec = me == 0 ? "q5" : "q4";
  int code = 0;
  try {
    Plan plan(comm, cfg);
  } catch (const gradwire::Error& e) {
    code = static_cast<int>(e.code());
  }
  EXPECT_EQ(code, static_cast<int>(gradwire::ErrorCode::InvalidArgument));
  // The communicator still works afterwards.
  float one = 1, sum = 0;
  comm.allreduce(&one, &sum, 1, DType::Float32, ReduceOp::Sum);
  EXPECT_EQ(sum, static_cast<float>(P));
}

TEST(PlanAllreduce, TwoPlansInFlight) {
  Communicator comm(MPI_COMM_WORLD);
  const int me = comm.rank();
  const std::size_t n = 2003;
  const Case a{"sra", "q4"}, b{"shared-grid", "q8"};
  PlanConfig ca, cb;
  ca.count = cb.count = n;
  ca.codec = a.codec;
  ca.algorithm = a.algorithm;
  cb.codec = b.codec;
  cb.algorithm = b.algorithm;
  ca.error_feedback = cb.error_feedback = false;
  Plan pa(comm, ca), pb(comm, cb);
  std::vector<float> xa = inputs_of(1000 + n, me, n), xb = xa, oa(n), ob(n);
  gradwire::Request ra = pa.start(xa.data(), oa.data());
  gradwire::Request rb = pb.start(xb.data(), ob.data());
  rb.wait();  // the later one first
  while (!ra.test()) {}
  Vec exact;
  const Vec Ba = bound_of(a, comm, 1000 + n, n, ReduceOp::Sum, &exact);
  const Vec Bb = bound_of(b, comm, 1000 + n, n, ReduceOp::Sum, &exact);
  Mismatch ma, mb;
  for (std::size_t i = 0; i < n; ++i) {
    ma.check(i, oa[i], exact[i], Ba[i]);
    mb.check(i, ob[i], exact[i], Bb[i]);
  }
  EXPECT_EQ(ma.count, 0u) << ma.first;
  EXPECT_EQ(mb.count, 0u) << mb.first;
  EXPECT_TRUE(identical_everywhere(oa.data(), n * 4));
  EXPECT_TRUE(identical_everywhere(ob.data(), n * 4));
}

TEST(PlanAllreduce, StatsNameTheAlgorithmAndCountWireBytes) {
  Communicator comm(MPI_COMM_WORLD);
  const int P = comm.size();
  const std::size_t n = 4096;
  std::vector<float> x = inputs_of(1, comm.rank(), n), out(n);
  PlanConfig cfg;
  cfg.count = n;
  cfg.codec = "q4";
  cfg.algorithm = "sra";  // "auto" asks the cost model, which may pick dense here
  Plan plan(comm, cfg);
  plan.run(x.data(), out.data());
  const gradwire::PlanStats& s = plan.stats();
  EXPECT_EQ(s.algorithm, "sra");
  EXPECT_EQ(s.logical_bytes, n * 4);
  if (P > 1) {
    EXPECT_GT(s.wire_bytes, 0u);
    EXPECT_LT(s.wire_bytes, 2 * n * 4 / 4);  // q4: an eighth of float32, twice, plus scales
  }
  EXPECT_NEAR(s.total_s, s.encode_s + s.decode_s + s.transfer_s, 1e-9);
  // The one-shot form agrees with a plan without error feedback (same algorithm and step).
  std::vector<float> once(n);
  gradwire::allreduce_compressed(comm, x.data(), once.data(), n, DType::Float32, ReduceOp::Sum,
                                 "q4", "shared-grid");
  Vec exact;
  const Vec B = bound_of({"shared-grid", "q4"}, comm, 1, n, ReduceOp::Sum, &exact);
  Mismatch m;
  for (std::size_t i = 0; i < n; ++i) m.check(i, once[i], exact[i], B[i]);
  EXPECT_EQ(m.count, 0u) << m.first;
}

// The residual file is keyed by global element and holds the sum over ranks, so a plan made on
// a different number of ranks loads the same total (saved at 4 ranks, loaded at 2 and 3).
TEST(PlanAllreduce, ResidualSavedAtFourLoadsAtTwoAndThree) {
  Communicator world(MPI_COMM_WORLD);
  if (world.size() < 4) GTEST_SKIP() << "needs four ranks";
  const int me = world.rank();
  long long pid = static_cast<long long>(getpid());
  MPI_Bcast(&pid, 1, MPI_LONG_LONG, 0, MPI_COMM_WORLD);
  const std::string base = "/tmp/gradwire_plan_test_" + std::to_string(pid);
  const std::size_t n = 1000;
  auto read_file = [](const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::vector<char>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  };
  auto make = [&](Communicator& c) {
    PlanConfig cfg;
    cfg.count = n;
    cfg.codec = "q2:round=nearest";
    cfg.algorithm = "sra";
    return Plan(c, cfg);
  };
  Communicator four = world.split(me < 4 ? 0 : 1, me);
  if (me < 4) {
    Plan p = make(four);
    std::vector<float> x(n), out(n);
    for (int step = 0; step < 3; ++step) {
      for (std::size_t i = 0; i < n; ++i) x[i] = input(70 + step, me, i);
      p.run(x.data(), out.data());
    }
    p.save_residual(base + "_4");
  }
  MPI_Barrier(MPI_COMM_WORLD);
  const std::vector<char> saved = read_file(base + "_4");
  ASSERT_GT(saved.size(), 24u);
  std::size_t bad = 0;
  double mass = 0;
  for (int k : {2, 3}) {
    Communicator sub = world.split(me < k ? 0 : 1, me);
    const std::string path = base + "_" + std::to_string(k);
    if (me < k) {
      Plan p = make(sub);
      p.load_residual(base + "_4");
      p.save_residual(path);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    const std::vector<char> again = read_file(path);
    if (again.size() != saved.size()) {
      ++bad;
      continue;
    }
    for (std::size_t i = 0; i < n; ++i) {
      double a = 0, b = 0;
      std::memcpy(&a, saved.data() + 24 + 8 * i, 8);
      std::memcpy(&b, again.data() + 24 + 8 * i, 8);
      mass += std::fabs(a);
      // Each of k holders keeps total / k as float32: k float roundings of the share.
      if (std::fabs(a - b) > k * 0x1.0p-24 * std::fabs(a) + 1e-30) ++bad;
    }
  }
  EXPECT_EQ(bad, 0u) << "the per-element total residual changed on reload";
  EXPECT_GT(mass, 0.0) << "nothing was saved";
  // A file of another size is rejected on every rank.
  PlanConfig cfg;
  cfg.count = n + 1;
  cfg.codec = "q4";
  Plan other(world, cfg);
  int code = 0;
  try {
    other.load_residual(base + "_4");
  } catch (const gradwire::Error& e) {
    code = static_cast<int>(e.code());
  }
  EXPECT_EQ(code, static_cast<int>(gradwire::ErrorCode::InvalidArgument));
  MPI_Barrier(MPI_COMM_WORLD);
  if (me == 0)
    for (const char* s : {"_4", "_2", "_3"}) std::remove((base + s).c_str());
}

}  // namespace
