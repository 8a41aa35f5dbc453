// A loop of collectives during which one rank is killed (SIGKILL), for the shrink-policy
// fault tests (ULFM builds, mpirun --with-ft ulfm). Every survivor must get PeerFailed naming
// the lost rank, shrink, and finish the loop on the survivors with correct results.
//
//   gw_ft_probe MODE ITERS DIR     MODE: dense (host allreduce, exact), q8 (SRA plan with error
//                                  feedback, within a bound of the exact sum), topk (top-k +
//                                  error-feedback plan: output plus residual conserve the
//                                  input, residual carried over the shrink)
// Test hooks (environment): GW_TEST_KILL_RANK=K GW_TEST_KILL_CALL=N: world rank K dies in
// call N; GW_TEST_KILL_DELAY_US=D: D microseconds into the call (a thread raises SIGKILL
// while the loop runs, at the latest at call N + 3; default 0: just before call N). The killer writes the time of the kill to
// DIR/kill_ns; survivors print "detect_ms=" (kill to PeerFailed, same-host monotonic clock).
//
// A survivor learns of the failure in the call it happened in, or, when that call had already
// completed on it, in the next one; after the shrink the survivors resume at the furthest one.
//
// Prints "PASS rank R ..." on each survivor that finished with correct results; exits non-zero
// on any wrong result or error other than PeerFailed.
#include <mpi.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gradwire/communicator.hpp>
#include <gradwire/plan.hpp>

using namespace gradwire;

namespace {

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : fallback;
}

[[noreturn]] void die(int wr, const std::string& why) {
  std::fprintf(stderr, "FAIL rank %d: %s\n", wr, why.c_str());
  std::fflush(stderr);
  std::_Exit(3);
}

// World ranks of comm's members, in comm's rank order.
std::vector<int> members(const Communicator& c) {
  MPI_Group g, w;
  MPI_Comm_group(c.mpi_comm(), &g);
  MPI_Comm_group(MPI_COMM_WORLD, &w);
  std::vector<int> in(static_cast<std::size_t>(c.size())), out(in.size());
  for (int i = 0; i < c.size(); ++i) in[static_cast<std::size_t>(i)] = i;
  MPI_Group_translate_ranks(g, c.size(), in.data(), w, out.data());
  MPI_Group_free(&g);
  MPI_Group_free(&w);
  return out;
}

// Integer-valued for dense (exact sums); in [0.25, 0.75] for the lossy plans, so that one
// rank's contribution (>= 0.25) is far above the codec's error.
float input(const std::string& mode, int wr, int it, std::size_t j) {
  if (mode == "dense") return static_cast<float>(wr * 1000 + it + static_cast<int>(j % 7));
  return 0.5f + 0.25f * std::sin(0.37f * static_cast<float>(j) + 1.3f * static_cast<float>(wr) +
                                 0.11f * static_cast<float>(it));
}

std::vector<double> read_residual(const std::string& path, std::size_t n, int wr) {
  std::ifstream f(path, std::ios::binary);
  f.seekg(24);
  std::vector<double> r(n);
  f.read(reinterpret_cast<char*>(r.data()), static_cast<std::streamsize>(n * 8));
  if (!f) die(wr, "cannot read residual file " + path);
  return r;
}

// Every member holds the same bits.
void check_identical(Communicator& c, const std::vector<float>& y, int wr) {
  std::uint64_t h = 1469598103934665603ull;
  for (float v : y) {
    std::uint32_t b;
    std::memcpy(&b, &v, 4);
    h = (h ^ b) * 1099511628211ull;
  }
  std::int64_t mm[2] = {static_cast<std::int64_t>(h), ~static_cast<std::int64_t>(h)};
  c.allreduce(mm, mm, 2, DType::Int64, ReduceOp::Max, Memory::Host);
  if (mm[0] != ~mm[1]) die(wr, "ranks hold different results");
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int wr = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &wr);
  const std::string mode = argc > 1 ? argv[1] : "dense";
  const int iters = argc > 2 ? std::atoi(argv[2]) : 30;
  const std::string dir = argc > 3 ? argv[3] : "/tmp";
  const int kill_rank = env_int("GW_TEST_KILL_RANK", -1);
  const int kill_call = env_int("GW_TEST_KILL_CALL", -1);
  const int kill_delay_us = env_int("GW_TEST_KILL_DELAY_US", 0);
  const std::size_t n = 4096;

  Options o;
  o.on_failure = Options::FailurePolicy::Shrink;
  auto comm = std::make_unique<Communicator>(MPI_COMM_WORLD, o);
  const int initial = comm->size();

  PlanConfig cfg;
  cfg.count = n;
  cfg.codec = mode == "q8" ? "q8" : "topk:0.1";
  cfg.algorithm = mode == "q8" ? "sra" : "sparse-allgather";
  cfg.error_feedback = true;
  std::unique_ptr<Plan> plan;
  if (mode != "dense") plan = std::make_unique<Plan>(*comm, cfg);

  std::vector<float> x(n), y(n);
  std::vector<double> in_sum(n, 0.0), out_sum(n, 0.0), r0(n, 0.0);
  std::string lost_msg;
  double detect_ms = -1;
  int shrinks = 0;
  for (int it = 0; it < iters;) {
    if (wr == kill_rank && it == kill_call) {
      auto kill = [dir] {
        std::ofstream(dir + "/kill_ns") << now_ns() << "\n";
        std::raise(SIGKILL);
      };
      if (kill_delay_us <= 0) kill();
      std::thread([kill, kill_delay_us] {
        std::this_thread::sleep_for(std::chrono::microseconds(kill_delay_us));
        kill();
      }).detach();
    }
    if (wr == kill_rank && kill_call >= 0 && it == kill_call + 3) {
      // The thread has not fired yet (fast calls): die now, inside the loop all the same.
      std::ofstream(dir + "/kill_ns") << now_ns() << "\n";
      std::raise(SIGKILL);
    }
    for (std::size_t j = 0; j < n; ++j) x[j] = input(mode, wr, it, j);
    // The exact sum over the current members.
    const std::vector<int> who = members(*comm);
    std::vector<double> exact(n, 0.0);
    for (std::size_t j = 0; j < n; ++j)
      for (int m : who) exact[j] += input(mode, m, it, j);
    try {
      if (plan) {
        plan->run(x.data(), y.data());
      } else {
        comm->allreduce(x.data(), y.data(), n, DType::Float32, ReduceOp::Sum, Memory::Host);
      }
      check_identical(*comm, y, wr);  // a gradwire call too: the failure may surface here
    } catch (const Error& e) {
      const std::int64_t t = now_ns();
      if (e.code() != ErrorCode::PeerFailed)
        die(wr, std::string("expected PeerFailed, got ") + error_code_name(e.code()) + ": " + e.what());
      std::int64_t k = 0;
      std::ifstream(dir + "/kill_ns") >> k;
      detect_ms = k > 0 ? static_cast<double>(t - k) / 1e6 : -1;
      lost_msg = e.what();
      if (comm->size() != initial) die(wr, "the failed communicator's getters changed");
      auto next = std::make_unique<Communicator>(comm->shrink());
      ++shrinks;
      if (plan) {
        auto fresh = std::make_unique<Plan>(*next, cfg);
        fresh->carry_residual(*plan);
        if (mode == "topk") {
          fresh->save_residual(dir + "/r0");
          r0 = read_residual(dir + "/r0", n, wr);
          std::fill(in_sum.begin(), in_sum.end(), 0.0);
          std::fill(out_sum.begin(), out_sum.end(), 0.0);
        }
        plan = std::move(fresh);  // the old plan goes before its communicator
      }
      comm = std::move(next);
      // A call can complete on some ranks and fail on others (their message from the dead
      // rank never came): those that completed it fail in the next call instead. Resume
      // where the furthest survivor is; the others skip the one they lost (its result is
      // whole on the ranks that have it).
      int resume = it;
      comm->allreduce(&resume, &resume, 1, DType::Int32, ReduceOp::Max, Memory::Host);
      it = resume;
      continue;
    }
    double worst = 0;
    for (std::size_t j = 0; j < n; ++j) {
      in_sum[j] += exact[j];
      out_sum[j] += y[j];
      if (mode != "topk") worst = std::max(worst, std::fabs(y[j] - exact[j]));
    }
    const double tol = mode == "dense" ? 0.0 : 0.03;
    if (worst > tol)
      die(wr, "iteration " + std::to_string(it) + " on " + std::to_string(who.size()) +
                  " ranks: error " + std::to_string(worst) + " > " + std::to_string(tol));
    ++it;
  }
  if (mode == "topk") {
    // Conservation since the shrink: outputs + final residual = inputs + carried residual.
    plan->save_residual(dir + "/rend");
    const std::vector<double> rend = read_residual(dir + "/rend", n, wr);
    double worst = 0, carried = 0;
    for (std::size_t j = 0; j < n; ++j) {
      worst = std::max(worst, std::fabs(out_sum[j] + rend[j] - in_sum[j] - r0[j]));
      carried = std::max(carried, std::fabs(r0[j]));
    }
    if (worst > 1e-2) die(wr, "top-k + EF does not conserve the input: off by " + std::to_string(worst));
    if (shrinks > 0 && carried == 0) die(wr, "no residual was carried over the shrink");
  }
  std::printf("PASS rank %d mode=%s size %d->%d shrinks=%d detect_ms=%.1f lost='%s'\n", wr,
              mode.c_str(), initial, comm->size(), shrinks, detect_ms, lost_msg.c_str());
  std::fflush(stdout);
  plan.reset();
  comm.reset();
  MPI_Finalize();
  return 0;
}
