// The cost model behind algorithm "auto" (docs/compressed-collectives.md, "Cost model"): its
// decisions on synthetic figures (fast link -> dense, slow link -> compressed), agreement
// across ranks, the cache file, and that an "auto" plan makes the same choice on every rank.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <gradwire/codec.hpp>
#include <gradwire/communicator.hpp>
#include <gradwire/plan.hpp>

#include "collectives/cost_model.hpp"
#include "collectives/cost_probe.hpp"

using gradwire::Communicator;
using gradwire::make_codec;
using gradwire::Plan;
using gradwire::PlanConfig;
using gradwire::coll::CostInputs;
using gradwire::coll::decide_allreduce;
using gradwire::coll::predict_allreduce;

namespace {

// One host, shared memory: microsecond latency, ~10 GB/s, the engine's allreduce ~1 ns per
// element, q8 encode 2 ns and decode 1 ns per element.
CostInputs fast_link() {
  CostInputs in;
  in.alpha = 2e-6;
  in.beta = 1e-10;
  in.dense_a = 5e-6;
  in.dense_b = 1e-9;
  in.enc = 2e-9;
  in.dec = 1e-9;
  return in;
}

// 1 Gbit/s between ranks: 8 ns per byte, 50 us latency; a ring allreduce moves 2 (P-1)/P of
// 4 bytes per element at 4 ranks: 48 ns per element.
CostInputs slow_link() {
  CostInputs in = fast_link();
  in.alpha = 5e-5;
  in.beta = 8e-9;
  in.dense_a = 6e-5;
  in.dense_b = 4.8e-8;
  return in;
}

bool same_everywhere(const std::string& s) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  std::uint64_t mm[2] = {h, ~h};
  MPI_Allreduce(MPI_IN_PLACE, mm, 2, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
  return mm[0] == ~mm[1];
}

const auto kCheck = [](int rc, const char* what) {
  if (rc != MPI_SUCCESS) throw std::runtime_error(what);
};

TEST(CostModel, FastLinkPicksDenseSlowLinkCompresses) {
  const auto q8 = make_codec("q8");
  const std::size_t big = std::size_t{1} << 24;  // 64 MB of float32
  auto d = decide_allreduce(fast_link(), "sra", q8, big, 4);
  EXPECT_EQ(d.algorithm, "dense");
  EXPECT_DOUBLE_EQ(d.dense_s, 5e-6 + 1e-9 * static_cast<double>(big));
  EXPECT_GT(d.compressed_s, d.dense_s);
  EXPECT_DOUBLE_EQ(d.predicted_s, d.dense_s);
  d = decide_allreduce(slow_link(), "sra", q8, big, 4);
  EXPECT_EQ(d.algorithm, "sra");
  EXPECT_LT(d.compressed_s, 0.5 * d.dense_s);
  EXPECT_DOUBLE_EQ(d.predicted_s, d.compressed_s);
  // Latency-bound sizes: two exchanges cost more than one allreduce, even on a slow link.
  EXPECT_EQ(decide_allreduce(slow_link(), "sra", q8, 8, 4).algorithm, "dense");
  // One rank: nothing to send, the codec is pure cost.
  EXPECT_EQ(decide_allreduce(fast_link(), "sra", q8, big, 1).algorithm, "dense");
}

TEST(CostModel, SparseCodecs) {
  const std::size_t big = std::size_t{1} << 24;
  CostInputs in = slow_link();
  in.enc = 5e-9;
  EXPECT_EQ(decide_allreduce(in, "sparse-allgather", make_codec("topk:0.01"), big, 4).algorithm,
            "sparse-allgather");
  EXPECT_EQ(decide_allreduce(fast_link(), "sparse-allgather", make_codec("topk:0.01"), big, 4)
                .algorithm,
            "dense");
  // threshold's message bound is every element: past the dense switch, never worth it.
  EXPECT_EQ(decide_allreduce(in, "sparse-allgather", make_codec("threshold:1e-3"), big, 4)
                .algorithm,
            "dense");
}

TEST(CostModel, CompressionMustPayByTheMargin) {
  // Choose figures where sra is predicted 3 % faster than dense: within the 5 % margin, dense.
  const auto q8 = make_codec("q8");
  const std::size_t n = 1 << 20;
  CostInputs in = slow_link();
  const double sra = predict_allreduce(in, "sra", q8, n, 4);
  in.dense_a = 0;
  in.dense_b = sra / 0.97 / static_cast<double>(n);
  EXPECT_EQ(decide_allreduce(in, "sra", q8, n, 4).algorithm, "dense");
  in.dense_b = sra / 0.9 / static_cast<double>(n);
  EXPECT_EQ(decide_allreduce(in, "sra", q8, n, 4).algorithm, "sra");
  // What the model does not cover is left as chosen.
  EXPECT_EQ(decide_allreduce(in, "shared-grid", q8, n, 4).algorithm, "shared-grid");
}

// Figures that differ by rank (rank 0 sees a fast link, the others a slow one) would split the
// decision; agreement (the maximum of each figure) gives every rank the same figures.
TEST(CostModel, AgreementGivesEveryRankTheSameChoice) {
  int P = 1, me = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &P);
  MPI_Comm_rank(MPI_COMM_WORLD, &me);
  const auto q8 = make_codec("q8");
  const std::size_t big = std::size_t{1} << 24;
  CostInputs in = me == 0 ? fast_link() : slow_link();
  in.enc *= 1 + me;  // and encode speeds differ
  const std::string local = decide_allreduce(in, "sra", q8, big, P).algorithm;
  if (P > 1 && me == 0) {
    EXPECT_EQ(local, "dense");
  }
  if (me == 1) {
    EXPECT_EQ(local, "sra");
  }
  gradwire::coll::agree_costs(MPI_COMM_WORLD, in, kCheck);
  EXPECT_DOUBLE_EQ(in.enc, 2e-9 * P);
  EXPECT_DOUBLE_EQ(in.beta, P > 1 ? 8e-9 : 1e-10);
  const auto d = decide_allreduce(in, "sra", q8, big, P);
  EXPECT_TRUE(same_everywhere(d.algorithm + std::to_string(d.predicted_s)));
  if (P > 1) {
    EXPECT_EQ(d.algorithm, "sra");
  }
}

// An "auto" plan probes (or reuses figures) and every rank ends with the same algorithm and the
// same predictions, whatever each rank measured; the run's bits agree too.
TEST(CostModel, AutoPlanAgreesAcrossRanks) {
  Communicator comm(MPI_COMM_WORLD);
  for (const char* codec : {"q8", "topk:0.01"}) {
    for (std::size_t n : {std::size_t{16}, std::size_t{1} << 14}) {
      PlanConfig cfg;
      cfg.count = n;
      cfg.codec = codec;
      Plan plan(comm, cfg);
      const gradwire::PlanStats& s = plan.stats();
      if (n * sizeof(float) < gradwire::coll::kAutoMinBytes) {  // below the floor: no trial
        EXPECT_EQ(s.algorithm, "dense");
        EXPECT_EQ(s.cost_source, "floor");
        EXPECT_EQ(s.predicted_s, 0.0);
      } else {
        EXPECT_TRUE(s.algorithm == "dense" ||
                    s.algorithm == (std::string(codec) == "q8" ? "sra" : "sparse-allgather"))
            << s.algorithm;
        EXPECT_EQ(s.cost_source.rfind("trial:", 0), 0u) << s.cost_source;
        EXPECT_GT(s.predicted_s, 0.0);
      }
      EXPECT_TRUE(s.predicted_s == s.predicted_dense_s || s.predicted_s == s.predicted_compressed_s);
      char buf[128];
      std::snprintf(buf, sizeof buf, "%s %.17g %.17g %.17g", s.algorithm.c_str(), s.predicted_s,
                    s.predicted_dense_s, s.predicted_compressed_s);
      EXPECT_TRUE(same_everywhere(buf)) << codec << " n=" << n << ": " << buf;
      std::vector<float> x(n), out(n);
      for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<float>((i * 7 + comm.rank()) % 13) - 6;
      plan.run(x.data(), out.data());
      if (n * sizeof(float) < gradwire::coll::kAutoMinBytes) {
        EXPECT_EQ(plan.stats().total_s, 0.0);  // the floor's runs are not timed (plan.hpp)
      } else {
        EXPECT_GT(plan.stats().total_s, 0.0);  // measured, beside the prediction
      }
      EXPECT_TRUE(same_everywhere(std::string(reinterpret_cast<const char*>(out.data()), n * 4)));
    }
  }
  // Explicit algorithms and codec none never run the model.
  PlanConfig cfg;
  cfg.count = 100;
  cfg.codec = "q8";
  cfg.algorithm = "sra";
  EXPECT_TRUE(Plan(comm, cfg).stats().cost_source.empty());
  cfg.algorithm = "auto";
  cfg.codec = "none";
  Plan none(comm, cfg);
  EXPECT_EQ(none.stats().algorithm, "dense");
  EXPECT_TRUE(none.stats().cost_source.empty());
}

// GRADWIRE_COST_CACHE: trial times read from the file (keyed by host set and rank count,
// the candidate and the trial size) decide instead of a trial: a slow compressed run there
// makes "auto" dense, a fast one compressed. A trial appends what it measured.
TEST(CostModel, CacheFileDecides) {
  Communicator comm(MPI_COMM_WORLD);
  const int me = comm.rank();
  long long pid = static_cast<long long>(getpid());
  MPI_Bcast(&pid, 1, MPI_LONG_LONG, 0, MPI_COMM_WORLD);
  const std::string path = "/tmp/gradwire_cost_" + std::to_string(pid);
  const std::string key = gradwire::coll::cost_cache_key(MPI_COMM_WORLD, kCheck);
  const std::size_t n = std::size_t{1} << 22;  // above the trial size: figures scaled by 4
  const std::size_t nt = gradwire::coll::kTrialMaxElements;
  const std::string what = "sra/" + gradwire::parse_codec("q8").to_string() + "/ef1/sum";
  auto write = [&](double dense_s, double comp_s) {
    if (me == 0) {
      std::ofstream f(path, std::ios::trunc);
      f << "gradwire-cost-v1 " << key << " trial " << what << " " << nt << " " << dense_s << " "
        << comp_s << "\n";
      // Other hosts, another trial size: not used.
      f << "gradwire-cost-v1 0000000000000000 " << comm.size() << " trial " << what << " " << nt
        << " 1 1e-9\n";
      f << "gradwire-cost-v1 " << key << " trial " << what << " " << nt / 2 << " 1 1e-9\n";
    }
    MPI_Barrier(MPI_COMM_WORLD);
  };
  setenv("GRADWIRE_COST_CACHE", path.c_str(), 1);
  PlanConfig cfg;
  cfg.count = n;
  cfg.codec = "q8";
  write(0.010, 0.020);
  {
    Plan p(comm, cfg);
    EXPECT_EQ(p.stats().algorithm, "dense");
    EXPECT_EQ(p.stats().cost_source, "trial:cache-file");
    EXPECT_NEAR(p.stats().predicted_dense_s, 0.040, 1e-12);
    EXPECT_NEAR(p.stats().predicted_compressed_s, 0.080, 1e-12);
  }
  write(0.020, 0.005);
  {
    Plan p(comm, cfg);
    EXPECT_EQ(p.stats().algorithm, "sra");
    EXPECT_EQ(p.stats().cost_source, "trial:cache-file");
    EXPECT_NEAR(p.stats().predicted_s, 0.020, 1e-12);
  }
  // A codec the file lacks is tried (at a small size: the test stays quick) and appended.
  cfg.codec = "q4:bucket=320";
  cfg.count = 4096;
  {
    Plan p(comm, cfg);
    EXPECT_EQ(p.stats().cost_source, "trial:probe");
  }
  MPI_Barrier(MPI_COMM_WORLD);
  std::ifstream f(path);
  const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const std::string q4 = gradwire::parse_codec("q4:bucket=320").to_string();
  EXPECT_NE(text.find(key + " trial sra/" + q4 + "/ef1/sum 4096 "),
            std::string::npos)
      << text;
  unsetenv("GRADWIRE_COST_CACHE");
  MPI_Barrier(MPI_COMM_WORLD);
  if (me == 0) std::remove(path.c_str());
}

// The decision from trial times: scaled above the trial size, dense within the margin, and
// dense for an empty buffer.
TEST(CostModel, DecisionFromTrial) {
  using gradwire::coll::decide_from_trial;
  auto d = decide_from_trial(0.010, 0.004, 1000, "sra", 4000);
  EXPECT_EQ(d.algorithm, "sra");
  EXPECT_DOUBLE_EQ(d.dense_s, 0.040);
  EXPECT_DOUBLE_EQ(d.compressed_s, 0.016);
  EXPECT_DOUBLE_EQ(d.predicted_s, 0.016);
  d = decide_from_trial(0.010, 0.0096, 1000, "sra", 1000);  // 4 % faster: within the margin
  EXPECT_EQ(d.algorithm, "dense");
  EXPECT_DOUBLE_EQ(d.predicted_s, 0.010);
  EXPECT_EQ(decide_from_trial(0.010, 0.0090, 1000, "sparse-allgather", 1000).algorithm,
            "sparse-allgather");
  EXPECT_EQ(decide_from_trial(0.010, 0.020, 1000, "sra", 1000).algorithm, "dense");
}

}  // namespace
