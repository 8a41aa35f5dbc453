// Plan::save_state / load_state: on the same ranks the restored plan's next steps are the
// uninterrupted plan's bits (residual, DGC velocity and warm-up step, PowerSGD's Q); on
// another number of ranks the residual and velocity totals are kept and Q and the step carry;
// a file of another configuration, version or a corrupted one fails on every rank, named.
#include <gtest/gtest.h>
#include <gmock/gmock.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include <gradwire/communicator.hpp>
#include <gradwire/gradwire.h>
#include <gradwire/plan.hpp>

#include "collectives/state_file.hpp"
#include "mpi/plan_inputs.hpp"

using gradwire::Communicator;
using gradwire::ErrorCode;
using gradwire::Plan;
using gradwire::PlanConfig;
using testing::HasSubstr;

namespace {

constexpr std::size_t kCount = 4096;

std::string tmp_path(const char* tag) {
  long long id = static_cast<long long>(::getpid());
  MPI_Bcast(&id, 1, MPI_LONG_LONG, 0, MPI_COMM_WORLD);
  return "/tmp/gw-state-" + std::to_string(id) + "-" + tag;
}

struct Case {
  const char* name;
  PlanConfig cfg;
};

PlanConfig averaging(std::size_t count, const char* codec, const char* algorithm) {
  PlanConfig c;
  c.count = count;
  c.codec = codec;
  c.algorithm = algorithm;
  c.op = gradwire::ReduceOp::Avg;
  return c;
}

PlanConfig q8() { return averaging(kCount, "q8", "sra"); }

PlanConfig topk_dgc() {
  PlanConfig c = averaging(kCount, "topk:0.01", "sparse-allgather");
  c.momentum = 0.9f;
  c.warmup_steps = 8;  // the density depends on the restored step
  c.warmup_density = 0.25;
  c.clip_norm = 40.0f;
  return c;
}

PlanConfig powersgd() {
  PlanConfig c = averaging(gwplan::kPowerSgdCount, "none", "powersgd");
  c.powersgd_rank = 4;
  c.shapes = gwplan::kPowerSgdShapes;
  return c;
}

std::vector<float> grad(std::size_t n, int step, int me) {
  return gwplan::inputs_of(100 + static_cast<std::uint64_t>(step), me, n);
}

// Counted over every rank: true only if every rank's condition holds.
bool everywhere(bool mine) {
  int v = mine ? 1 : 0;
  MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  return v == 1;
}

class SameRanks : public testing::TestWithParam<Case> {};

// Three steps, a save, then two more steps: a plan that loads the file takes the same two
// steps bit for bit. A fresh plan that skips the load does not (so the state is what matters).
TEST_P(SameRanks, NextStepsAreTheUninterruptedRunsBits) {
  Communicator comm(MPI_COMM_WORLD);
  const PlanConfig cfg = GetParam().cfg;
  const int me = comm.rank();
  const std::string path = tmp_path(GetParam().name);
  const std::size_t n = cfg.count;
  std::vector<float> out(n);
  std::vector<std::vector<float>> want(2, std::vector<float>(n));
  {
    Plan a(comm, cfg);
    for (int s = 0; s < 3; ++s) a.run(grad(n, s, me).data(), out.data());
    a.save_state(path);
    for (int s = 3; s < 5; ++s) a.run(grad(n, s, me).data(), want[static_cast<std::size_t>(s - 3)].data());
  }
  Plan b(comm, cfg);
  b.load_state(path);
  EXPECT_EQ(b.step(), 3u);
  bool same = true;
  for (int s = 3; s < 5; ++s) {
    b.run(grad(n, s, me).data(), out.data());
    same = same && std::memcmp(out.data(), want[static_cast<std::size_t>(s - 3)].data(), n * 4) == 0;
  }
  EXPECT_TRUE(everywhere(same)) << GetParam().name << ": a restored plan's steps differ";
  Plan fresh(comm, cfg);
  fresh.set_step(3);
  fresh.run(grad(n, 3, me).data(), out.data());
  EXPECT_FALSE(everywhere(std::memcmp(out.data(), want[0].data(), n * 4) == 0))
      << GetParam().name << ": the state made no difference, so the test proves nothing";
  MPI_Barrier(MPI_COMM_WORLD);
  if (me == 0) std::remove(path.c_str());
}

INSTANTIATE_TEST_SUITE_P(PlanState, SameRanks,
                         testing::Values(Case{"q8", q8()}, Case{"topk_dgc", topk_dgc()},
                                         Case{"powersgd", powersgd()}),
                         [](const testing::TestParamInfo<Case>& i) { return std::string(i.param.name); });

// What a state file holds, summed over its ranks: residual and velocity by global element.
struct Totals {
  std::vector<double> residual, velocity;
  std::vector<float> warm;
  std::uint64_t step = 0;
  std::size_t ranks = 0;
};

Totals totals(const std::string& path, const PlanConfig& cfg) {
  gradwire::coll::StateFile f;
  std::ifstream in(path, std::ios::binary);
  const std::vector<char> b((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // The header's fields are not what this reads: take them from the file itself.
  gradwire::coll::StateFile want;
  want.elements = cfg.count;
  Totals t;
  t.residual.assign(cfg.count, 0.0);
  t.velocity.assign(cfg.count, 0.0);
  const std::string e = gradwire::coll::read_state_file(path, want, f);
  // The fields differ from the empty `want` (named in e); everything else was read.
  EXPECT_THAT(e, HasSubstr("another configuration"));
  t.warm = f.warm_start;
  t.step = f.step;
  t.ranks = f.ranks.size();
  for (const std::vector<char>& r : f.ranks) {
    gradwire::coll::RankState s;
    EXPECT_EQ(gradwire::coll::decode_rank_state(r, cfg.count, s), "");
    for (const auto& sl : s.slots)
      for (std::size_t i = 0; i < sl.data.size(); ++i) t.residual[sl.offset + i] += sl.data[i];
    for (std::size_t i = 0; i < s.velocity.size(); ++i) t.velocity[i] += s.velocity[i];
  }
  return t;
}

class OtherRanks : public testing::TestWithParam<Case> {};

// Saved by all P ranks, loaded by P - 1 and saved again: the residual and velocity totals per
// element are the same within the float rounding of a share; Q and the step are the same bits;
// the loaded plan runs.
TEST_P(OtherRanks, TotalsKeptQAndStepCarried) {
  Communicator world(MPI_COMM_WORLD);
  const int P = world.size(), me = world.rank();
  if (P < 2) GTEST_SKIP() << "needs two ranks or more";
  const PlanConfig cfg = GetParam().cfg;
  const std::size_t n = cfg.count;
  const std::string path = tmp_path(GetParam().name), again = path + "-fewer";
  std::vector<float> out(n);
  {
    Plan a(world, cfg);
    for (int s = 0; s < 3; ++s) a.run(grad(n, s, me).data(), out.data());
    a.save_state(path);
  }
  const int k = P - 1;
  Communicator sub = world.split(me < k ? 0 : 1, me);
  if (me < k) {
    Plan b(sub, cfg);
    b.load_state(path);
    EXPECT_EQ(b.step(), 3u);
    b.save_state(again);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  bool ok = true;
  std::string why;
  if (me == 0) {
    const Totals t0 = totals(path, cfg), t1 = totals(again, cfg);
    EXPECT_EQ(t0.ranks, static_cast<std::size_t>(P));
    EXPECT_EQ(t1.ranks, static_cast<std::size_t>(k));
    EXPECT_EQ(t1.step, 3u);
    EXPECT_EQ(t0.warm, t1.warm) << "Q did not carry";
    double mass = 0, vmass = 0;
    for (std::size_t i = 0; i < n; ++i) {
      mass += std::fabs(t0.residual[i]);
      vmass += std::fabs(t0.velocity[i]);
      // Each of k holders keeps total / k as float32: k float roundings of the share.
      const double bound_r = k * 0x1.0p-24 * std::fabs(t0.residual[i]) + 1e-30;
      const double bound_v = k * 0x1.0p-24 * std::fabs(t0.velocity[i]) + 1e-30;
      if (std::fabs(t0.residual[i] - t1.residual[i]) > bound_r && ok)
        ok = false, why = "residual at " + std::to_string(i);
      if (std::fabs(t0.velocity[i] - t1.velocity[i]) > bound_v && ok)
        ok = false, why = "velocity at " + std::to_string(i);
    }
    EXPECT_GT(mass, 0.0) << "no residual was saved";
    if (cfg.momentum > 0) {
      EXPECT_GT(vmass, 0.0) << "no velocity was saved";
    }
    if (cfg.algorithm == "powersgd") {
      EXPECT_FALSE(t0.warm.empty());
    }
  }
  EXPECT_TRUE(everywhere(ok)) << "a total changed on reload: " << why;
  if (me < k) {
    Plan b(sub, cfg);
    b.load_state(path);
    b.run(grad(n, 3, me).data(), out.data());
    EXPECT_TRUE(std::isfinite(out[0]));
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (me == 0) {
    std::remove(path.c_str());
    std::remove(again.c_str());
  }
}

INSTANTIATE_TEST_SUITE_P(PlanState, OtherRanks,
                         testing::Values(Case{"topk_dgc", topk_dgc()}, Case{"powersgd", powersgd()}),
                         [](const testing::TestParamInfo<Case>& i) { return std::string(i.param.name); });

int code_of(const std::function<void()>& f, std::string* message) {
  try {
    f();
  } catch (const gradwire::Error& e) {
    *message = e.what();
    return static_cast<int>(e.code());
  }
  return 0;
}

std::vector<char> slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<char>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

void spit(const std::string& path, const std::vector<char>& b) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(b.data(), static_cast<std::streamsize>(b.size()));
}

// Every rank gets InvalidArgument with a message naming what is wrong; the plan stays usable.
TEST(PlanState, WrongFileFailsOnEveryRankNamingWhat) {
  Communicator comm(MPI_COMM_WORLD);
  const int me = comm.rank();
  const std::string path = tmp_path("wrong"), bad = path + "-edited";
  std::vector<float> out(kCount);
  Plan a(comm, topk_dgc());
  a.run(grad(kCount, 0, me).data(), out.data());
  a.save_state(path);
  auto expect = [&](const PlanConfig& cfg, const std::string& file, const std::string& text) {
    Plan p(comm, cfg);
    std::string m;
    EXPECT_EQ(code_of([&] { p.load_state(file); }, &m), static_cast<int>(ErrorCode::InvalidArgument))
        << text;
    EXPECT_THAT(m, HasSubstr(text));
    std::vector<float> o(cfg.count);
    p.run(grad(cfg.count, 1, me).data(), o.data());  // still usable
  };
  PlanConfig other = topk_dgc();
  other.codec = "q8";
  other.algorithm = "sra";
  other.momentum = 0.0f;
  other.warmup_steps = 0;
  expect(other, path, "codec topk:ratio=0.01,index=u32,value=f32 there, q8:bucket=512");
  expect(other, path, "momentum 0.900000 there, 0.000000 here");
  other = topk_dgc();
  other.count = kCount + 1;
  expect(other, path, "holds 4096 elements of a allreduce plan; this plan has 4097");
  PlanConfig ps = powersgd(), ps_other = powersgd();
  ps_other.shapes = {{30, 40}, {1, 30}};
  {
    Plan p(comm, ps);
    std::vector<float> o(ps.count);
    p.run(grad(ps.count, 0, me).data(), o.data());
    p.save_state(bad);
  }
  expect(ps_other, bad, "shapes 40x30,1x30 there, 30x40,1x30 here");
  ps_other = powersgd();
  ps_other.powersgd_rank = 2;
  expect(ps_other, bad, "powersgd_rank 4 there, 2 here");
  expect(topk_dgc(), path + "-missing", "cannot open");

  const std::vector<char> good = me == 0 ? slurp(path) : std::vector<char>();
  auto edited = [&](auto&& edit, const std::string& text) {
    if (me == 0) {
      std::vector<char> b = good;
      edit(b);
      spit(bad, b);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    expect(topk_dgc(), bad, text);
  };
  edited([](std::vector<char>& b) { b[b.size() / 2] ^= 0x40; }, "fails its CRC-32 checksum");
  edited([](std::vector<char>& b) { b.push_back(0); }, "fails its CRC-32 checksum");
  edited([](std::vector<char>& b) { b.resize(b.size() - 9); }, "fails its CRC-32 checksum");
  edited([](std::vector<char>& b) { b[8] = 7; }, "version 7 plan-state file");
  edited([](std::vector<char>& b) { b[0] = 'X'; }, "not a gradwire plan-state file");
  // A residual file (save_residual) is not a state file.
  a.save_residual(bad);
  expect(topk_dgc(), bad, "not a gradwire plan-state file");
  MPI_Barrier(MPI_COMM_WORLD);
  if (me == 0) {
    std::remove(path.c_str());
    std::remove(bad.c_str());
  }
}

// The C ABI's entry points: a round trip restores the step and the next run's bits; a NULL
// path and a wrong file are GW_INVALID_ARGUMENT with a message.
TEST(PlanState, CAbiRoundTrip) {
  gw_comm_t comm = nullptr;
  ASSERT_EQ(gw_comm_create(MPI_COMM_WORLD, &comm), GW_SUCCESS);
  int me = 0;
  gw_comm_rank(comm, &me);
  const std::string path = tmp_path("capi");
  gw_plan_config_t cfg;
  ASSERT_EQ(gw_plan_config_init(&cfg), GW_SUCCESS);
  cfg.count = kCount;
  cfg.codec = "topk:0.01";
  cfg.algorithm = "sparse-allgather";
  cfg.op = GW_AVG;
  cfg.momentum = 0.9f;
  gw_plan_t a = nullptr, b = nullptr;
  ASSERT_EQ(gw_plan_create(comm, &cfg, &a), GW_SUCCESS) << gw_last_error();
  ASSERT_EQ(gw_plan_create(comm, &cfg, &b), GW_SUCCESS) << gw_last_error();
  std::vector<float> want(kCount), got(kCount);
  for (int s = 0; s < 2; ++s) EXPECT_EQ(gw_plan_run(a, grad(kCount, s, me).data(), want.data()), GW_SUCCESS);
  EXPECT_EQ(gw_plan_save_state(a, path.c_str()), GW_SUCCESS) << gw_last_error();
  EXPECT_EQ(gw_plan_load_state(b, path.c_str()), GW_SUCCESS) << gw_last_error();
  std::uint64_t step = 0;
  EXPECT_EQ(gw_plan_step(b, &step), GW_SUCCESS);
  EXPECT_EQ(step, 2u);
  EXPECT_EQ(gw_plan_run(a, grad(kCount, 2, me).data(), want.data()), GW_SUCCESS);
  EXPECT_EQ(gw_plan_run(b, grad(kCount, 2, me).data(), got.data()), GW_SUCCESS);
  EXPECT_TRUE(everywhere(std::memcmp(want.data(), got.data(), kCount * 4) == 0));
  EXPECT_EQ(gw_plan_save_state(a, nullptr), GW_INVALID_ARGUMENT);
  EXPECT_EQ(gw_plan_load_state(a, nullptr), GW_INVALID_ARGUMENT);
  EXPECT_EQ(gw_plan_load_state(a, (path + "-missing").c_str()), GW_INVALID_ARGUMENT);
  EXPECT_THAT(std::string(gw_last_error()), HasSubstr("cannot open"));
  EXPECT_EQ(gw_plan_destroy(&a), GW_SUCCESS);
  EXPECT_EQ(gw_plan_destroy(&b), GW_SUCCESS);
  EXPECT_EQ(gw_comm_destroy(&comm), GW_SUCCESS);
  MPI_Barrier(MPI_COMM_WORLD);
  if (me == 0) std::remove(path.c_str());
}

}  // namespace
