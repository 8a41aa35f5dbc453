// A loop of collectives during which one rank is killed (SIGKILL), for the respawn-policy
// fault tests (ULFM builds, mpirun --with-ft ulfm): the survivors respawn() a replacement, it
// joins with the step and the shared state, and the loop ends on the full rank count with
// correct results. Or, at a step boundary, grow(n) with nobody killed.
//
//   gw_respawn_probe MODE ITERS DIR [GROW_AT GROW_N]
//     MODE: dense (host allreduce, exact), q8 (SRA plan with error feedback, within 0.03 of
//     the exact sum), topk (top-k + error feedback: outputs plus residual conserve the input
//     and the residual carried over the change).
// Test hooks (environment): GW_TEST_KILL_RANK=K GW_TEST_KILL_CALL=N [GW_TEST_KILL_DELAY_US=D]
// as in gw_ft_probe (the original rank K dies in call N). A file DIR/kill_joiner: every
// replacement dies right after MPI_Init, before it joins (the survivors must go on shrunk).
// A file DIR/kill_joiner_in_merge: every replacement dies on entering MPI_Intercomm_merge,
// after its hand-shake, while the survivors are inside the merge (the profiling interface:
// the library's call reaches this program's MPI_Intercomm_merge first). A file
// DIR/kill_survivor holding "ID POINT": the survivor of that id dies inside respawn(), on
// entering its first MPI_Allreduce (POINT step: the agreement on the step to resume at),
// MPI_Comm_spawn (spawn) or MPI_Intercomm_merge (merge).
//
// Every rank is known by its id: its rank in the original numbering (a replacement takes the
// lost rank's). Inputs depend on (id, iteration); the exact sum is over the current members'
// ids. A "model" vector (the running sum of results) is the application state that joiners
// receive through share_state(); every rank must hold the same one at the end.
//
// Prints "PASS rank R id I ..." on each rank that finished with correct results; the
// survivors also print recover_ms (kill to the first completed collective on the grown
// communicator, same-host monotonic clock).
#include <mpi.h>

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

bool die_in_merge = false;  // this process is told to die entering MPI_Intercomm_merge
bool die_in_spawn = false;  // ... entering MPI_Comm_spawn
bool die_in_step = false;   // ... entering MPI_Allreduce once in_respawn
bool in_respawn = false;

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : fallback;
}

[[noreturn]] void die(int id, const std::string& why) {
  std::fprintf(stderr, "FAIL id %d: %s\n", id, why.c_str());
  std::fflush(stderr);
  std::_Exit(3);
}

float input(const std::string& mode, int id, int it, std::size_t j) {
  if (mode == "dense") return static_cast<float>(id * 1000 + it + static_cast<int>(j % 7));
  return 0.5f + 0.25f * std::sin(0.37f * static_cast<float>(j) + 1.3f * static_cast<float>(id) +
                                 0.11f * static_cast<float>(it));
}

std::vector<double> read_residual(const std::string& path, std::size_t n, int id) {
  std::ifstream f(path, std::ios::binary);
  f.seekg(24);
  std::vector<double> r(n);
  f.read(reinterpret_cast<char*>(r.data()), static_cast<std::streamsize>(n * 8));
  if (!f) die(id, "cannot read residual file " + path);
  return r;
}

std::uint64_t hash(const std::vector<float>& y) {
  std::uint64_t h = 1469598103934665603ull;
  for (float v : y) {
    std::uint32_t b;
    std::memcpy(&b, &v, 4);
    h = (h ^ b) * 1099511628211ull;
  }
  return h;
}

void check_identical(Communicator& c, const std::vector<float>& y, int id, const char* what) {
  const std::uint64_t h = hash(y);
  std::int64_t mm[2] = {static_cast<std::int64_t>(h), ~static_cast<std::int64_t>(h)};
  c.allreduce(mm, mm, 2, DType::Int64, ReduceOp::Max, Memory::Host);
  if (mm[0] != ~mm[1]) die(id, std::string("ranks hold different ") + what);
}

// The ids of the current members, in rank order.
std::vector<int> member_ids(Communicator& c, int id) {
  std::vector<int> ids(static_cast<std::size_t>(c.size()));
  c.allgather(&id, ids.data(), 1, DType::Int32, Memory::Host);
  return ids;
}

}  // namespace

extern "C" int MPI_Intercomm_merge(MPI_Comm inter, int high, MPI_Comm* merged) {
  if (die_in_merge) std::raise(SIGKILL);
  return PMPI_Intercomm_merge(inter, high, merged);
}

extern "C" int MPI_Allreduce(const void* in, void* out, int count, MPI_Datatype type, MPI_Op op,
                             MPI_Comm comm) {
  if (die_in_step && in_respawn) std::raise(SIGKILL);
  return PMPI_Allreduce(in, out, count, type, op, comm);
}

extern "C" int MPI_Comm_spawn(const char* command, char* argv[], int maxprocs, MPI_Info info,
                              int root, MPI_Comm comm, MPI_Comm* inter, int errcodes[]) {
  if (die_in_spawn) std::raise(SIGKILL);
  return PMPI_Comm_spawn(command, argv, maxprocs, info, root, comm, inter, errcodes);
}

int main(int argc, char** argv) {
  // MPI_THREAD_MULTIPLE: what lets gradwire bound a merge that a dying process leaves spinning.
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  const std::string mode = argc > 1 ? argv[1] : "dense";
  const int iters = argc > 2 ? std::atoi(argv[2]) : 30;
  const std::string dir = argc > 3 ? argv[3] : "/tmp";
  const int grow_at = argc > 5 ? std::atoi(argv[4]) : -1;
  const int grow_n = argc > 5 ? std::atoi(argv[5]) : 0;
  // (A file, not the environment: a joiner has its parent's environment only once it joined.)
  if (Communicator::joining() && std::ifstream(dir + "/kill_joiner")) std::raise(SIGKILL);
  die_in_merge = Communicator::joining() && std::ifstream(dir + "/kill_joiner_in_merge");
  const int kill_id = env_int("GW_TEST_KILL_RANK", -1);
  const int kill_call = env_int("GW_TEST_KILL_CALL", -1);
  const int kill_delay_us = env_int("GW_TEST_KILL_DELAY_US", 0);
  const std::size_t n = 4096;

  Options o;
  o.on_failure = Options::FailurePolicy::Respawn;
  auto comm = std::make_unique<Communicator>(MPI_COMM_WORLD, o);
  const bool joiner = comm->joined();
  const int id = comm->rank();  // original numbering: a replacement takes the lost rank's
  if (!joiner) {
    int victim = -1;
    std::string point;
    std::ifstream(dir + "/kill_survivor") >> victim >> point;
    die_in_merge = id == victim && point == "merge";
    die_in_spawn = id == victim && point == "spawn";
    die_in_step = id == victim && point == "step";
  }
  int initial = comm->size();

  std::vector<float> x(n), y(n), model(n, 0.0f);
  std::vector<double> in_sum(n, 0.0), out_sum(n, 0.0), r0(n, 0.0);
  int it = 0, changes = 0;
  double recover_ms = -1;
  bool timing = false;  // the first full-size collective after a respawn ends the timer
  std::int64_t kill_ns = 0;
  // A joiner does what the members do after the change, in the same order: state, plan, residual.
  if (joiner) {
    it = static_cast<int>(comm->resume_step());
    comm->share_state({{"model", model.data(), n, DType::Float32, Memory::Host}});
  }
  PlanConfig cfg;
  cfg.count = n;
  cfg.codec = mode == "q8" ? "q8" : "topk:0.1";
  cfg.algorithm = mode == "q8" ? "sra" : "sparse-allgather";
  cfg.error_feedback = true;
  std::unique_ptr<Plan> plan;
  if (mode != "dense") plan = std::make_unique<Plan>(*comm, cfg);
  if (joiner) {
    if (plan) {
      plan->carry_residual(nullptr);
      if (mode == "topk") {
        plan->save_residual(dir + "/r0");
        r0 = read_residual(dir + "/r0", n, id);
      }
    }
    initial = -1;  // not known here: the survivors check the final size
  }
  while (it < iters) {
    if (!joiner && id == kill_id && it == kill_call) {
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
    if (!joiner && id == kill_id && kill_call >= 0 && it == kill_call + 3) {
      std::ofstream(dir + "/kill_ns") << now_ns() << "\n";
      std::raise(SIGKILL);
    }
    std::vector<int> who;
    try {
      if (it == grow_at && grow_n > 0 && changes == 0 && !joiner) {
        // A step boundary: every rank grows here (the joiners start after it).
        auto next = std::make_unique<Communicator>(comm->grow(grow_n, static_cast<std::uint64_t>(it)));
        ++changes;
        next->share_state({{"model", model.data(), n, DType::Float32, Memory::Host}});
        if (plan) {
          auto fresh = std::make_unique<Plan>(*next, cfg);
          fresh->carry_residual(plan.get());
          plan = std::move(fresh);
          if (mode == "topk") {
            plan->save_residual(dir + "/r0");
            r0 = read_residual(dir + "/r0", n, id);
            std::fill(in_sum.begin(), in_sum.end(), 0.0);
            std::fill(out_sum.begin(), out_sum.end(), 0.0);
          }
        }
        comm = std::move(next);
      }
      who = member_ids(*comm, id);
      for (std::size_t j = 0; j < n; ++j) x[j] = input(mode, id, it, j);
      if (plan) {
        plan->run(x.data(), y.data());
      } else {
        comm->allreduce(x.data(), y.data(), n, DType::Float32, ReduceOp::Sum, Memory::Host);
      }
      check_identical(*comm, y, id, "results");
    } catch (const Error& e) {
      if (e.code() != ErrorCode::PeerFailed)
        die(id, std::string("expected PeerFailed, got ") + error_code_name(e.code()) + ": " + e.what());
      std::ifstream(dir + "/kill_ns") >> kill_ns;
      // Survivors may be one call apart: respawn() agrees on the furthest, and the state
      // comes from the lowest rank that reached it.
      in_respawn = true;
      auto next = std::make_unique<Communicator>(comm->respawn(static_cast<std::uint64_t>(it)));
      in_respawn = false;
      ++changes;
      it = static_cast<int>(next->resume_step());
      next->share_state({{"model", model.data(), n, DType::Float32, Memory::Host}});
      if (plan) {
        auto fresh = std::make_unique<Plan>(*next, cfg);
        fresh->carry_residual(plan.get());
        plan = std::move(fresh);  // the old plan goes before its communicator
        if (mode == "topk") {
          plan->save_residual(dir + "/r0");
          r0 = read_residual(dir + "/r0", n, id);
          std::fill(in_sum.begin(), in_sum.end(), 0.0);
          std::fill(out_sum.begin(), out_sum.end(), 0.0);
        }
      }
      comm = std::move(next);
      timing = comm->size() == initial;
      continue;
    }
    if (timing) {
      recover_ms = kill_ns > 0 ? static_cast<double>(now_ns() - kill_ns) / 1e6 : -1;
      timing = false;
    }
    std::vector<double> exact(n, 0.0);
    for (std::size_t j = 0; j < n; ++j)
      for (int m : who) exact[j] += input(mode, m, it, j);
    double worst = 0;
    for (std::size_t j = 0; j < n; ++j) {
      in_sum[j] += exact[j];
      out_sum[j] += y[j];
      if (mode != "topk") worst = std::max(worst, std::fabs(y[j] - exact[j]));
      model[j] += y[j];
    }
    const double tol = mode == "dense" ? 0.0 : 0.03;
    if (worst > tol)
      die(id, "iteration " + std::to_string(it) + " on " + std::to_string(who.size()) +
                  " ranks: error " + std::to_string(worst) + " > " + std::to_string(tol));
    ++it;
  }
  check_identical(*comm, model, id, "models (share_state)");
  if (mode == "topk") {
    plan->save_residual(dir + "/rend");
    const std::vector<double> rend = read_residual(dir + "/rend", n, id);
    double worst = 0;
    for (std::size_t j = 0; j < n; ++j)
      worst = std::max(worst, std::fabs(out_sum[j] + rend[j] - in_sum[j] - r0[j]));
    if (worst > 1e-2)
      die(id, "top-k + EF does not conserve the input: off by " + std::to_string(worst));
  }
  std::printf("PASS rank %d id %d mode=%s joiner=%d size %d->%d changes=%d recover_ms=%.1f\n",
              comm->rank(), id, mode.c_str(), joiner ? 1 : 0, initial, comm->size(), changes,
              recover_ms);
  std::fflush(stdout);
  plan.reset();
  comm.reset();
  MPI_Finalize();
  return 0;
}
