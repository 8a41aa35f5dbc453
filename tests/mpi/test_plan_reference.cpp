// The mpirun half of the bit-equality between the test tiers: plans of the deterministic
// algorithms, run through MPI, give the same bits as the serial references of
// tests/loopback/reference.hpp, which the loopback tier (tests/loopback) checks too. So the
// in-process tier and the mpirun tier agree bit for bit where the old tests compare bits.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <gradwire/codec.hpp>
#include <gradwire/communicator.hpp>
#include <gradwire/plan.hpp>

#include "loopback/reference.hpp"
#include "plan_inputs.hpp"

namespace {

using gradwire::PlanCollective;

constexpr std::uint64_t kSeed = 7;

std::size_t differ(const float* a, const std::vector<float>& b) {
  std::size_t d = 0;
  for (std::size_t i = 0; i < b.size(); ++i) d += std::memcmp(a + i, &b[i], 4) != 0;
  return d;
}

TEST(PlanReference, SraReduceScatterAllgatherSparseMatchTheSerialReference) {
  gradwire::Communicator comm(MPI_COMM_WORLD);
  const int P = comm.size(), me = comm.rank();
  const std::size_t n = 1003;
  std::vector<std::vector<float>> x;
  for (int r = 0; r < P; ++r) x.push_back(gwplan::inputs_of(kSeed, r, n * static_cast<std::size_t>(P)));
  const auto& mine = x[static_cast<std::size_t>(me)];

  gradwire::PlanConfig rs;
  rs.collective = PlanCollective::ReduceScatter;
  rs.count = n;
  rs.codec = "q4";
  rs.error_feedback = false;
  rs.seed = kSeed;
  gradwire::Plan prs(comm, rs);
  std::vector<float> out(n);
  prs.run(mine.data(), out.data());
  const gradwire::Codec q4(gradwire::parse_codec("q4"));
  EXPECT_EQ(differ(out.data(), gwref::reduce_scatter_block(q4, x, me, n, kSeed, 0, false)), 0u)
      << "reduce-scatter q4";

  gradwire::PlanConfig ag;
  ag.collective = PlanCollective::Allgather;
  ag.count = n;
  ag.codec = "q8";
  ag.error_feedback = false;
  ag.seed = kSeed;
  gradwire::Plan pag(comm, ag);
  std::vector<float> all(n * static_cast<std::size_t>(P));
  std::vector<float> block(mine.begin(), mine.begin() + static_cast<long>(n));
  pag.run(block.data(), all.data());
  const gradwire::Codec q8(gradwire::parse_codec("q8"));
  for (int r = 0; r < P; ++r) {
    const std::vector<float> xr(x[static_cast<std::size_t>(r)].begin(),
                                x[static_cast<std::size_t>(r)].begin() + static_cast<long>(n));
    EXPECT_EQ(differ(all.data() + n * static_cast<std::size_t>(r), gwref::allgather_block(q8, xr, r, kSeed, 0)), 0u)
        << "allgather q8, block " << r;
  }

  // SRA: the peers' chunks are added in a fixed order, so its bits are the reference's too.
  for (const char* spec : {"q8", "q4"}) {
    gradwire::PlanConfig sr;
    sr.count = n;
    sr.codec = spec;
    sr.algorithm = "sra";
    sr.error_feedback = false;
    sr.seed = kSeed;
    gradwire::Plan psr(comm, sr);
    std::vector<std::vector<float>> firsts;
    for (const auto& v : x) firsts.emplace_back(v.begin(), v.begin() + static_cast<long>(n));
    std::vector<float> got(n);
    psr.run(firsts[static_cast<std::size_t>(me)].data(), got.data());
    const gradwire::Codec codec(gradwire::parse_codec(spec));
    EXPECT_EQ(differ(got.data(), gwref::sra_allreduce(codec, firsts, kSeed, 0, false)), 0u) << "sra " << spec;
  }

  gradwire::PlanConfig sp;
  sp.count = n;
  sp.codec = "topk:ratio=0.05";  // below the dense switch at every size the suite runs
  sp.algorithm = "sparse-allgather";
  sp.error_feedback = false;
  sp.seed = kSeed;
  gradwire::Plan psp(comm, sp);
  std::vector<std::vector<float>> firsts;
  for (const auto& v : x) firsts.emplace_back(v.begin(), v.begin() + static_cast<long>(n));
  std::vector<float> sum(n);
  psp.run(firsts[static_cast<std::size_t>(me)].data(), sum.data());
  const gradwire::Codec topk(gradwire::parse_codec(sp.codec));
  EXPECT_EQ(differ(sum.data(), gwref::sparse_sum(topk, firsts, kSeed, 0)), 0u) << "sparse topk";
}

// The chunked pipelines (GRADWIRE_OVERLAP_CHUNK, collectives/overlap.hpp): the same bits as
// the serial references (so as the plain order), with chunks of 100 elements (rounded up to
// whole codec buckets) and of 1 (one bucket each).
TEST(PlanReference, ChunkedPipelinesMatchTheSerialReference) {
  gradwire::Communicator comm(MPI_COMM_WORLD);
  const int P = comm.size(), me = comm.rank();
  const std::size_t n = 1003;
  std::vector<std::vector<float>> x;
  for (int r = 0; r < P; ++r) x.push_back(gwplan::inputs_of(kSeed, r, n));
  const auto& mine = x[static_cast<std::size_t>(me)];
  for (const char* chunk : {"100", "1"}) {
    SCOPED_TRACE(std::string("chunk ") + chunk);
    auto plan = [&](gradwire::PlanConfig cfg) {
      cfg.count = n;
      cfg.error_feedback = false;
      cfg.seed = kSeed;
      setenv("GRADWIRE_OVERLAP_CHUNK", chunk, 1);
      auto p = std::make_unique<gradwire::Plan>(comm, cfg);
      unsetenv("GRADWIRE_OVERLAP_CHUNK");
      return p;
    };
    gradwire::PlanConfig ag;
    ag.collective = PlanCollective::Allgather;
    ag.codec = "q8";
    std::vector<float> all(n * static_cast<std::size_t>(P));
    const auto pag = plan(ag);
    for (std::uint64_t step = 0; step < 2; ++step) {  // the workspace reused
      pag->run(mine.data(), all.data());
      const gradwire::Codec q8(gradwire::parse_codec("q8"));
      for (int r = 0; r < P; ++r)
        EXPECT_EQ(differ(all.data() + n * static_cast<std::size_t>(r),
                         gwref::allgather_block(q8, x[static_cast<std::size_t>(r)], r, kSeed, step)), 0u)
            << "allgather q8, block " << r << ", step " << step;
    }
    gradwire::PlanConfig sp;
    sp.codec = "topk:ratio=0.05";
    sp.algorithm = "sparse-allgather";
    std::vector<float> sum(n);
    plan(sp)->run(mine.data(), sum.data());
    EXPECT_EQ(differ(sum.data(), gwref::sparse_sum(gradwire::Codec(gradwire::parse_codec(sp.codec)), x, kSeed, 0)), 0u)
        << "sparse topk";
    gradwire::PlanConfig sr;
    sr.codec = "q8";
    sr.algorithm = "sra";
    std::vector<float> got(n);
    plan(sr)->run(mine.data(), got.data());
    EXPECT_EQ(differ(got.data(), gwref::sra_allreduce(gradwire::Codec(gradwire::parse_codec("q8")), x, kSeed, 0, false)), 0u)
        << "sra q8";
  }
}

}  // namespace
