// The loopback tier: every registered algorithm at 1-8 ranks, each rank a thread over the
// loopback transport (no MPI), checked against its documented error bound
// (docs/compressed-collectives.md, via tests/mpi/plan_bounds.hpp), for identical bits on every
// rank, and, where the algorithm is deterministic, for the same bits as the serial reference
// (reference.hpp) that the mpirun tier checks too.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "collectives/registry.hpp"
#include "gradwire/error.hpp"
#include "emulated_device.hpp"
#include "loopback_transport.hpp"
#include "mpi/plan_bounds.hpp"
#include "mpi/plan_inputs.hpp"
#include "reference.hpp"

namespace {

using gradwire::Codec;
using gradwire::PlanCollective;
using gradwire::ReduceOp;
namespace coll = gradwire::coll;

constexpr std::uint64_t kSeed = 7;

struct Case {
  PlanCollective collective;
  const char* algorithm;
  const char* codec;
  ReduceOp op = ReduceOp::Sum;
};

std::string name_of(const Case& c) {
  std::string s = std::string(coll::collective_name(c.collective)) + "_" + c.algorithm + "_" +
                  c.codec + (c.op == ReduceOp::Avg ? "_avg" : "");
  for (char& ch : s)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return s;
}

// gtest prints a parameter it cannot print as its bytes; a failure names the case instead.
void PrintTo(const Case& c, std::ostream* os) { *os << name_of(c); }

// Every rank's outputs of one run, the first error a rank threw, and every rank's.
struct Outcome {
  std::vector<std::vector<float>> out;
  std::string error;
  std::vector<std::string> errors;
  std::vector<std::size_t> device_encodes;  // emulated: each rank's executor's encode count
};

// Runs `steps` steps of the entry on P threads. Hier: nodes of two ranks (2k, 2k+1).
// emulated: every rank's algorithm on its own EmulatedDevice executor (the device paths).
Outcome run(const Case& k, int P, std::size_t n, const std::vector<std::vector<float>>& in,
            int steps = 1, bool emulated = false, std::size_t overlap_chunk = 0) {
  const coll::AlgorithmEntry* e = coll::find_algorithm(k.collective, k.algorithm);
  if (!e) throw std::logic_error(std::string("no registry entry ") + k.algorithm);
  coll::AlgoParams p;
  p.count = n;
  p.op = k.op;
  p.codec = gradwire::parse_codec(k.codec);
  p.error_feedback = false;
  p.seed = kSeed;
  p.overlap_chunk = overlap_chunk;
  const std::size_t out_n = k.collective == PlanCollective::Allgather ? n * static_cast<std::size_t>(P) : n;

  gwloop::Fabric world(P);
  const int nodes = (P + 1) / 2;
  std::vector<std::unique_ptr<gwloop::Fabric>> node_fabric;
  for (int j = 0; j < nodes; ++j) node_fabric.push_back(std::make_unique<gwloop::Fabric>(std::min(2, P - 2 * j)));
  gwloop::Fabric leaders(nodes);

  struct Rank {
    std::unique_ptr<gwloop::LoopbackTransport> t, local, lead;
    gwloop::EmulatedDevice x;  // before algo: its workspace is freed through x
    coll::AlgoParams p;
    std::unique_ptr<coll::Algorithm> algo;
  };
  std::vector<Rank> ranks(static_cast<std::size_t>(P));
  const std::vector<gradwire::MatrixShape> shapes{{16, 12}};
  for (int r = 0; r < P; ++r) {
    Rank& R = ranks[static_cast<std::size_t>(r)];
    R.t = std::make_unique<gwloop::LoopbackTransport>(world, r);
    R.p = p;
    if (emulated) R.p.x = &R.x;
    coll::Build b{*R.t, R.p};
    b.powersgd_rank = 2;
    b.shapes = &shapes;
    if (e->node_comms) {
      R.local = std::make_unique<gwloop::LoopbackTransport>(*node_fabric[static_cast<std::size_t>(r / 2)], r % 2);
      if (r % 2 == 0) R.lead = std::make_unique<gwloop::LoopbackTransport>(leaders, r / 2);
      b.local = R.local.get();
      b.leaders = R.lead.get();
      b.global_size = P;
    }
    R.algo = e->make(b);
  }
  Outcome o;
  o.out.assign(static_cast<std::size_t>(P), std::vector<float>(out_n, 0.0f));
  std::vector<std::string> errors(static_cast<std::size_t>(P));
  std::vector<std::thread> th;
  for (int r = 0; r < P; ++r) {
    th.emplace_back([&, r] {
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
      try {
        for (int s = 0; s < steps; ++s) {
          coll::Algorithm& a = *ranks[static_cast<std::size_t>(r)].algo;
          a.begin(in[static_cast<std::size_t>(r)].data(), o.out[static_cast<std::size_t>(r)].data(),
                  static_cast<std::uint64_t>(s));
          while (!a.progress()) {
            if (std::chrono::steady_clock::now() > deadline) throw std::runtime_error("loopback run hung");
            std::this_thread::yield();
          }
        }
      } catch (const std::exception& ex) {
        errors[static_cast<std::size_t>(r)] = ex.what();
      }
    });
  }
  for (auto& t : th) t.join();
  for (const std::string& s : errors)
    if (!s.empty() && o.error.empty()) o.error = s;
  o.errors = errors;
  for (const Rank& R : ranks) o.device_encodes.push_back(R.x.encodes);
  return o;
}

std::vector<std::vector<float>> inputs(int P, std::size_t n) {
  std::vector<std::vector<float>> x;
  for (int r = 0; r < P; ++r) x.push_back(gwplan::inputs_of(kSeed, r, n));
  return x;
}

std::size_t bit_differences(const std::vector<float>& a, const std::vector<float>& b) {
  std::size_t d = 0;
  for (std::size_t i = 0; i < a.size(); ++i) d += std::memcmp(&a[i], &b[i], 4) != 0;
  return d;
}

class Loopback : public ::testing::TestWithParam<Case> {};

TEST_P(Loopback, EveryRankCountWithinTheDocumentedBound) {
  const Case k = GetParam();
  const Codec codec(gradwire::parse_codec(k.codec));
  const std::size_t n = 1003;  // not a bucket multiple: a short last bucket and uneven chunks
  for (int P = 1; P <= 8; ++P) {
    SCOPED_TRACE("P = " + std::to_string(P));
    const std::size_t in_n = k.collective == PlanCollective::ReduceScatter ? n * static_cast<std::size_t>(P) : n;
    const auto x = inputs(P, in_n);
    const Outcome o = run(k, P, n, x);
    ASSERT_EQ(o.error, "");
    gwplan::Mismatch bad;
    std::size_t differ = 0;
    if (k.collective == PlanCollective::Allgather) {
      for (int r = 0; r < P; ++r) {
        const std::vector<float> want = std::string(k.codec) == "none"
                                            ? x[static_cast<std::size_t>(r)]
                                            : gwref::allgather_block(codec, x[static_cast<std::size_t>(r)], r, kSeed, 0);
        const std::vector<float> eb = codec.error_bounds(x[static_cast<std::size_t>(r)].data(), n);
        for (int q = 0; q < P; ++q) {
          const float* got = o.out[static_cast<std::size_t>(q)].data() + n * static_cast<std::size_t>(r);
          differ += bit_differences(std::vector<float>(got, got + n), want);
          for (std::size_t i = 0; i < n; ++i) bad.check(i, got[i], x[static_cast<std::size_t>(r)][i], eb[i]);
        }
      }
      EXPECT_EQ(differ, 0u) << "elements whose bits differ from decode(encode(block))";
      EXPECT_EQ(bad.count, 0u) << bad.first;
      continue;
    }
    if (k.collective == PlanCollective::ReduceScatter) {
      for (int me = 0; me < P; ++me) {
        const auto want = gwref::reduce_scatter_block(codec, x, me, n, kSeed, 0, k.op == ReduceOp::Avg);
        differ += bit_differences(o.out[static_cast<std::size_t>(me)], want);
        // E1 = sum over the other ranks of one rounding; |out - S| <= E1 + (P-1)u(A + E1).
        gwplan::Vec S(n, 0), A(n, 0), E1(n, 0);
        for (int r = 0; r < P; ++r) {
          const float* xr = x[static_cast<std::size_t>(r)].data() + n * static_cast<std::size_t>(me);
          if (r != me) {
            const auto eb = codec.error_bounds(xr, n);
            for (std::size_t i = 0; i < n; ++i) E1[i] += eb[i];
          }
          for (std::size_t i = 0; i < n; ++i) S[i] += xr[i], A[i] += std::fabs(xr[i]);
        }
        for (std::size_t i = 0; i < n; ++i) {
          double B = E1[i] + (P - 1) * gwplan::kU * (A[i] + E1[i]);
          double want_v = S[i];
          if (k.op == ReduceOp::Avg) B = gwplan::avg_of(B, S[i], P), want_v = S[i] / P;
          bad.check(i, o.out[static_cast<std::size_t>(me)][i], want_v, B);
        }
      }
      EXPECT_EQ(differ, 0u) << "elements whose bits differ from the serial reference";
      EXPECT_EQ(bad.count, 0u) << bad.first;
      continue;
    }
    // Allreduce: every rank ends with the same bits.
    for (int r = 1; r < P; ++r) differ += bit_differences(o.out[static_cast<std::size_t>(r)], o.out[0]);
    EXPECT_EQ(differ, 0u) << "elements whose bits differ between ranks";
    gwplan::Vec S(n, 0), A(n, 0);
    std::vector<gwplan::Vec> c, zero;
    for (const auto& v : x) {
      c.emplace_back(v.begin(), v.end());
      zero.emplace_back(n, 0.0);
      for (std::size_t i = 0; i < n; ++i) S[i] += v[i], A[i] += std::fabs(v[i]);
    }
    const std::string a = k.algorithm;
    const bool avg = k.op == ReduceOp::Avg;
    gwplan::Vec bound(n, 0);
    std::vector<float> want_bits;
    if (a == "sra" || a == "dense") {
      bound = gwplan::sra_bound(codec, c, zero, avg ? P : 1);
      if (a == "sra") want_bits = gwref::sra_allreduce(codec, x, kSeed, 0, avg);
    } else if (a == "shared-grid") {
      bound = gwplan::shared_grid_bound(codec, c);
      if (avg) for (std::size_t i = 0; i < n; ++i) bound[i] = gwplan::avg_of(bound[i], S[i], P);
    } else if (a == "sparse-allgather" && codec.spec().kind != gradwire::CodecKind::RandK) {
      bound = gwplan::sparse_bound(codec, x);
      if (avg) for (std::size_t i = 0; i < n; ++i) bound[i] = gwplan::avg_of(bound[i], S[i], P);
      // Below the dense switch the sum is the rank-order sum of the decoded messages.
      std::size_t total = 0;
      std::vector<std::byte> msg(codec.max_encoded_bytes(n));
      for (const auto& v : x) total += codec.encode(v.data(), gradwire::DType::Float32, n, 0, kSeed, 0, msg.data(), msg.size(), nullptr);
      if (P == 1 || total <= 8 * n) {
        want_bits = gwref::sparse_sum(codec, x, kSeed, 0);
        if (avg) for (float& v : want_bits) v /= static_cast<float>(P);
      }
    } else if (a == "sparse-allgather") {  // random-k: the chosen elements, summed
      std::vector<std::byte> msg(codec.max_encoded_bytes(n));
      std::vector<float> chosen(n, 0.0f);
      const std::size_t bytes = codec.encode(x[0].data(), gradwire::DType::Float32, n, 0, kSeed, 0, msg.data(), msg.size(), nullptr);
      codec.decode(msg.data(), bytes, chosen.data(), gradwire::DType::Float32, n);
      for (std::size_t i = 0; i < n; ++i) {
        if (chosen[i] == 0.0f) {  // not chosen (inputs are never exactly 0): exactly 0
          bad.check(i, o.out[0][i], 0.0, 0.0);
          S[i] = 0;
          bound[i] = INFINITY;  // checked above
          continue;
        }
        bound[i] = (P - 1) * gwplan::kU * A[i];
        if (avg) bound[i] = gwplan::avg_of(bound[i], S[i], P);
      }
    } else if (a == "hier") {
      // Contributors: the node sums N_k, each known within (l_k - 1)u sum|x| + u|N_k|.
      std::vector<gwplan::Vec> N, D;
      for (int j = 0; 2 * j < P; ++j) {
        gwplan::Vec s(n, 0), ab(n, 0), d(n, 0);
        const int l = std::min(2, P - 2 * j);
        for (int r = 2 * j; r < 2 * j + l; ++r)
          for (std::size_t i = 0; i < n; ++i) s[i] += x[static_cast<std::size_t>(r)][i], ab[i] += std::fabs(x[static_cast<std::size_t>(r)][i]);
        for (std::size_t i = 0; i < n; ++i) d[i] = (l - 1) * gwplan::kU * ab[i] + gwplan::kU * std::fabs(s[i]);
        N.push_back(s);
        D.push_back(d);
      }
      bound = gwplan::sra_bound(codec, N, D, 1);
      // sra_bound's A counts |N_k| + d_k; the documented bound uses sum |x_r| (>= |N_k|).
      for (std::size_t i = 0; i < n; ++i) bound[i] += (static_cast<int>(N.size()) - 1) * gwplan::kU * A[i];
      if (avg) for (std::size_t i = 0; i < n; ++i) bound[i] = gwplan::avg_of(bound[i], S[i], P);
    } else {
      FAIL() << "no bound for " << a;
    }
    for (std::size_t i = 0; i < n; ++i) {
      if (std::isinf(bound[i])) continue;
      bad.check(i, o.out[0][i], avg ? S[i] / P : S[i], bound[i]);
    }
    EXPECT_EQ(bad.count, 0u) << bad.first;
    if (!want_bits.empty()) {
      EXPECT_EQ(bit_differences(o.out[0], want_bits), 0u) << "bits differ from the serial reference";
    }
  }
}

using C = PlanCollective;
INSTANTIATE_TEST_SUITE_P(
    Registry, Loopback,
    ::testing::Values(Case{C::Allreduce, "dense", "none"}, Case{C::Allreduce, "dense", "none", ReduceOp::Avg},
                      Case{C::Allreduce, "sra", "q8"}, Case{C::Allreduce, "sra", "q4", ReduceOp::Avg},
                      Case{C::Allreduce, "sra", "fp16"}, Case{C::Allreduce, "sra", "bf16"},
                      Case{C::Allreduce, "sra", "sign"}, Case{C::Allreduce, "sra", "q2:bucket=128,scale=absmax"},
                      Case{C::Allreduce, "shared-grid", "q8"}, Case{C::Allreduce, "shared-grid", "q4", ReduceOp::Avg},
                      Case{C::Allreduce, "sparse-allgather", "topk:ratio=0.05"},
                      Case{C::Allreduce, "sparse-allgather", "topk:ratio=0.3", ReduceOp::Avg},
                      Case{C::Allreduce, "sparse-allgather", "randk:ratio=0.1"},
                      Case{C::Allreduce, "hier", "q8"}, Case{C::Allreduce, "hier", "topk:ratio=0.05"},
                      Case{C::Allgather, "dense", "none"}, Case{C::Allgather, "compressed-allgather", "q8"},
                      Case{C::Allgather, "compressed-allgather", "fp16"},
                      Case{C::ReduceScatter, "dense", "none"}, Case{C::ReduceScatter, "compressed-reduce-scatter", "q4"},
                      Case{C::ReduceScatter, "compressed-reduce-scatter", "q8", ReduceOp::Avg},
                      Case{C::ReduceScatter, "compressed-reduce-scatter", "sign"}),
    [](const ::testing::TestParamInfo<Case>& i) { return name_of(i.param); });

// Every nameable entry of the registry is covered above (a new algorithm must add a case).
TEST(LoopbackRegistry, EveryEntryHasACase) {
  const std::vector<std::string> covered = {"allreduce/dense", "allreduce/sra", "allreduce/shared-grid",
                                            "allreduce/sparse-allgather", "allreduce/hier", "allreduce/powersgd",
                                            "allgather/dense", "allgather/compressed-allgather",
                                            "reduce-scatter/dense", "reduce-scatter/compressed-reduce-scatter"};
  for (const coll::AlgorithmEntry& e : coll::algorithms()) {
    const std::string key = std::string(coll::collective_name(e.collective)) + "/" + e.name;
    EXPECT_NE(std::find(covered.begin(), covered.end(), key), covered.end()) << key << " has no loopback case";
  }
}

// PowerSGD on one matrix whose average has rank 1 (x_r = a_r b^T): rank-2 factors carry it
// exactly up to float rounding; the elements after the matrix travel dense.
TEST(LoopbackPowerSgd, LowRankMatrixComesBackAtEveryRankCount) {
  const std::size_t rows = 16, cols = 12, n = rows * cols + 5;
  for (int P = 1; P <= 8; ++P) {
    SCOPED_TRACE("P = " + std::to_string(P));
    std::vector<std::vector<float>> x(static_cast<std::size_t>(P), std::vector<float>(n));
    gwplan::Vec S(n, 0);
    for (int r = 0; r < P; ++r)
      for (std::size_t i = 0; i < n; ++i) {
        const float v = i < rows * cols ? gwplan::input(kSeed, r, i / cols) * gwplan::input(kSeed, 99, i % cols)
                                        : gwplan::input(kSeed, r, i);
        x[static_cast<std::size_t>(r)][i] = v;
        S[i] += v;
      }
    const Outcome o = run({C::Allreduce, "powersgd", "none"}, P, n, x);
    if (o.error.find("LAPACKE") != std::string::npos) GTEST_SKIP() << o.error;
    ASSERT_EQ(o.error, "");
    double scale = 0;
    for (double v : S) scale = std::max(scale, std::fabs(v));
    gwplan::Mismatch bad;
    for (int r = 0; r < P; ++r)
      for (std::size_t i = 0; i < n; ++i) bad.check(i, o.out[static_cast<std::size_t>(r)][i], S[i], 1e-5 * scale * P);
    EXPECT_EQ(bad.count, 0u) << bad.first;
  }
}

// The device paths (fixed-size messages, the agreed flag, errors thrown at finish()) on an
// executor that emulates a device: the same bits as the host paths where the algorithm is
// deterministic, the same bound otherwise, and the same error on every rank for a NaN.
TEST(LoopbackDevice, DevicePathsGiveTheHostResults) {
  const std::size_t n = 1003;
  const Case cases[] = {{C::Allreduce, "dense", "none"},
                        {C::Allreduce, "sra", "q8"},
                        {C::Allreduce, "sra", "q4", ReduceOp::Avg},
                        {C::Allgather, "compressed-allgather", "q8"},
                        {C::ReduceScatter, "compressed-reduce-scatter", "q4"},
                        {C::ReduceScatter, "compressed-reduce-scatter", "q8", ReduceOp::Avg}};
  for (const Case& k : cases) {
    for (int P = 1; P <= 8; ++P) {
      SCOPED_TRACE(name_of(k) + ", P = " + std::to_string(P));
      const std::size_t in_n = k.collective == C::ReduceScatter ? n * static_cast<std::size_t>(P) : n;
      const auto x = inputs(P, in_n);
      const Outcome host = run(k, P, n, x, 2);
      const Outcome dev = run(k, P, n, x, 2, true);
      ASSERT_EQ(host.error, "");
      ASSERT_EQ(dev.error, "");
      std::size_t differ = 0;
      for (int r = 0; r < P; ++r)
        differ += bit_differences(dev.out[static_cast<std::size_t>(r)], host.out[static_cast<std::size_t>(r)]);
      EXPECT_EQ(differ, 0u) << "elements whose bits differ from the host executor's run";
    }
  }
}

TEST(LoopbackDevice, NonFiniteOnOneRankFailsEveryRankAlike) {
  const std::size_t n = 1003;
  const int P = 3;
  const Case cases[] = {{C::Allreduce, "sra", "q8"},
                        {C::Allgather, "compressed-allgather", "q8"},
                        {C::ReduceScatter, "compressed-reduce-scatter", "q4"}};
  for (const Case& k : cases) {
    SCOPED_TRACE(name_of(k));
    const std::size_t in_n = k.collective == C::ReduceScatter ? n * P : n;
    auto x = inputs(P, in_n);
    x[1][500] = NAN;
    const Outcome bad = run(k, P, n, x, 1, true);
    for (int r = 0; r < P; ++r) {
      EXPECT_NE(bad.errors[static_cast<std::size_t>(r)].find("rank 1"), std::string::npos)
          << "rank " << r << ": " << bad.errors[static_cast<std::size_t>(r)];
      EXPECT_EQ(bad.errors[static_cast<std::size_t>(r)], bad.errors[0]);
      EXPECT_NE(bad.errors[0].find("non-finite"), std::string::npos) << bad.errors[0];
    }
  }
}

// GRADWIRE_OVERLAP turns on host pipelines only: a device executor keeps SRA's plain order,
// every chunk encoded through the executor (the pipelined scatter encodes with the host
// codec, which on a real GPU would read device pointers on the host).
TEST(LoopbackOverlap, DeviceExecutorsKeepThePlainOrder) {
  const std::size_t n = 1003;
  const int P = 3;
  const auto x = inputs(P, n);
  const Outcome plain = run({C::Allreduce, "sra", "q8"}, P, n, x, 2, true);
  setenv("GRADWIRE_OVERLAP", "1", 1);
  const Outcome dev = run({C::Allreduce, "sra", "q8"}, P, n, x, 2, true);
  unsetenv("GRADWIRE_OVERLAP");
  ASSERT_EQ(plain.error, "");
  ASSERT_EQ(dev.error, "");
  for (int r = 0; r < P; ++r) {
    // Every chunk a rank owns or sends, each step (q8's buckets leave rank 0 no chunk here).
    EXPECT_GE(plain.device_encodes[static_cast<std::size_t>(r)], 4u) << "rank " << r;
    EXPECT_EQ(dev.device_encodes[static_cast<std::size_t>(r)], plain.device_encodes[static_cast<std::size_t>(r)])
        << "rank " << r << ": encodes bypassed the device executor";
    EXPECT_EQ(bit_differences(dev.out[static_cast<std::size_t>(r)], plain.out[static_cast<std::size_t>(r)]), 0u);
  }
}

// The chunked pipelines (GRADWIRE_OVERLAP, collectives/overlap.hpp) against the plain order
// at 1-8 ranks, chunks of 7 elements (one bucket of a bucketed codec) and of 300: the same
// bits on every rank, over two steps (workspace reused).
TEST(LoopbackOverlap, ChunkedGivesThePlainOrdersBits) {
  const std::size_t n = 1003;
  const Case cases[] = {{C::Allgather, "compressed-allgather", "q8"},
                        {C::Allgather, "compressed-allgather", "fp16"},
                        {C::Allgather, "compressed-allgather", "q2:bucket=128,scale=absmax"},
                        {C::Allgather, "compressed-allgather", "topk:ratio=0.05"},
                        {C::Allreduce, "sparse-allgather", "topk:ratio=0.05"},
                        {C::Allreduce, "sparse-allgather", "topk:ratio=0.3", ReduceOp::Avg},
                        {C::Allreduce, "sparse-allgather", "randk:ratio=0.1"},
                        {C::Allreduce, "sra", "q8"}};
  for (const Case& k : cases) {
    for (int P = 1; P <= 8; ++P) {
      const auto x = inputs(P, n);
      const Outcome plain = run(k, P, n, x, 2);
      ASSERT_EQ(plain.error, "");
      for (std::size_t chunk : {std::size_t{7}, std::size_t{300}}) {
        SCOPED_TRACE(name_of(k) + ", P = " + std::to_string(P) + ", chunk " + std::to_string(chunk));
        const Outcome piped = run(k, P, n, x, 2, false, chunk);
        ASSERT_EQ(piped.error, "");
        std::size_t differ = 0;
        for (int r = 0; r < P; ++r)
          differ += bit_differences(piped.out[static_cast<std::size_t>(r)], plain.out[static_cast<std::size_t>(r)]);
        EXPECT_EQ(differ, 0u) << "elements whose bits differ from the plain order";
      }
    }
  }
}

// A non-finite input on one rank, in a chunk after some that went out as data: the error
// record takes that chunk's place and every later one's, and every rank fails the call with
// the plain order's error (origin and element).
TEST(LoopbackOverlap, NonFiniteOnOneRankFailsEveryRankAlike) {
  const std::size_t n = 1003;
  const Case k{C::Allgather, "compressed-allgather", "q8"};
  for (int P : {2, 3, 5, 8}) {
    for (std::size_t at : {std::size_t{0}, std::size_t{500}, n - 1}) {
      SCOPED_TRACE("P = " + std::to_string(P) + ", NaN at " + std::to_string(at));
      auto x = inputs(P, n);
      x[1][at] = NAN;
      const Outcome plain = run(k, P, n, x);
      const Outcome piped = run(k, P, n, x, 1, false, 128);
      ASSERT_NE(plain.errors[0], "");
      EXPECT_NE(plain.errors[0].find("rank 1"), std::string::npos) << plain.errors[0];
      for (int r = 0; r < P; ++r)
        EXPECT_EQ(piped.errors[static_cast<std::size_t>(r)], plain.errors[0]) << "rank " << r;
    }
  }
}

}  // namespace
