#include "device_setup.hpp"

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "device_assign.hpp"
#include "gradwire/config.hpp"
#include "request_state.hpp"
#if GRADWIRE_HAVE_NCCL
#include "transport/nccl_backend.hpp"
#endif

namespace gradwire::detail {
namespace {

std::atomic<std::uint64_t> g_setups{0};

// What each rank tells the others before any NCCL call: whether it can take part, and which
// GPU of which host it would use. Fixed size, exchanged as bytes.
struct Probe {
  std::int32_t code = 0;  // 0: this rank can take part; else an ErrorCode
  std::int32_t device = -1;
  char bus[32] = {};
  char host[MPI_MAX_PROCESSOR_NAME] = {};
  char cause[256] = {};
};

// Rank 0's NCCL unique id, or why it could not make one.
struct IdMessage {
  std::int32_t code = 0;
  char id[128] = {};
  char cause[256] = {};
};

template <std::size_t N>
void put(char (&dst)[N], const std::string& s) {
  const std::size_t k = std::min(N - 1, s.size());
  std::memcpy(dst, s.data(), k);
  dst[k] = '\0';
}

template <std::size_t N>
std::string get(const char (&src)[N]) {
  return std::string(src, strnlen(src, N));
}

[[noreturn]] void final_failure(Communicator::Impl& c, const CallInfo& call, ErrorCode code,
                                const std::string& cause) {
  c.device_failure = "device setup failed: " + cause;
  c.device_failure_code = code;
  c.fail(code, call, c.device_failure);
}

// Polls one MPI request of the setup. Past `limit_s` the setup is over on this rank: the
// request and its buffers go to the communicator (MPI may still write them), and c.policy
// decides between aborting the job and throwing Timeout.
void await(Communicator::Impl& c, const CallInfo& call, MPI_Request& req,
           std::vector<std::byte>& send, std::vector<std::byte>& recv, double limit_s,
           const char* step) {
  const std::int64_t deadline = monotonic_ns() + timeout_ns(limit_s);
  for (unsigned spins = 0;; ++spins) {
    int flag = 0;
    c.check_mpi(MPI_Test(&req, &flag, MPI_STATUS_IGNORE), call, "MPI_Test");
    if (flag) return;
    if ((spins & 63u) == 0 && monotonic_ns() > deadline) break;
    if (spins > 1000) sched_yield();
  }
  c.device_failure = std::string("device setup failed: ") + step + " did not complete within " +
                     std::to_string(limit_s) +
                     " s (GRADWIRE_INIT_TIMEOUT): some rank did not reach this device-memory "
                     "call (every rank must make it together)";
  c.device_failure_code = ErrorCode::Timeout;
  const std::string msg = message(c.rank, c.size, call, c.device_failure);
  if (c.policy == OnTimeout::Abort) c.abort_job(msg + "; aborting the job");
  auto st = std::make_unique<Request::State>();
  st->call = call;
  st->mpi.push_back(req);
  st->temp = std::move(send);
  st->temp2 = std::move(recv);
  c.orphan(std::move(st));
  throw Error(ErrorCode::Timeout, msg);
}

Probe probe(const Communicator::Impl& c) {
  Probe p;
  char host[MPI_MAX_PROCESSOR_NAME] = {};
  int len = 0;
  MPI_Get_processor_name(host, &len);
  put(p.host, std::string(host, static_cast<std::size_t>(std::max(len, 0))));
  DeviceProblem problem;
#if GRADWIRE_HAVE_NCCL
  NcclDevice d;
  if (!c.cuda_present) {
    problem = {ErrorCode::Unsupported,
               "no CUDA device is visible (host-memory collectives and plans need none)"};
  } else {
    problem = pick_nccl_device(c, c.options.device, d);
  }
  p.device = d.device;
  put(p.bus, d.bus_id);
#else
  (void)c;
  problem = {ErrorCode::Unsupported,
             "gradwire was built without NCCL (GRADWIRE_NCCL=OFF); device-memory collectives "
             "need it (host memory works)"};
#endif
  if (!problem.ok()) {
    p.code = static_cast<std::int32_t>(problem.code);
    put(p.cause, problem.cause);
  }
  return p;
}

// The same verdict on every rank, computed from the same probes: the first rank that cannot
// take part, or two ranks of one host on one GPU.
DeviceProblem verdict(const std::vector<Probe>& all) {
  const int size = static_cast<int>(all.size());
  int failed = 0, first = -1;
  for (int r = 0; r < size; ++r) {
    if (all[r].code == 0) continue;
    if (first < 0) first = r;
    ++failed;
  }
  if (failed > 0) {
    return {static_cast<ErrorCode>(all[first].code),
            "not possible on " + std::to_string(failed) + " of " + std::to_string(size) +
                " rank(s); rank " + std::to_string(first) + ": " + get(all[first].cause)};
  }
  std::map<std::string, std::pair<std::vector<std::string>, std::vector<int>>> hosts;
  for (int r = 0; r < size; ++r) {
    auto& [ids, ranks] = hosts[get(all[r].host)];
    ids.push_back(get(all[r].bus));
    ranks.push_back(r);
  }
  for (const auto& [host, h] : hosts) {
    const std::string clash = shared_device_error(h.first, h.second, host);
    if (!clash.empty()) return {ErrorCode::InvalidArgument, clash};
  }
  return {};
}

// Every rank learns whether any rank failed a step, and the lowest such rank (-1: none). A
// peer may spend its whole init deadline in the step before, hence the longer limit.
int lowest_failed_rank(Communicator::Impl& c, const CallInfo& call, bool failed,
                       const char* step) {
  std::vector<std::byte> send(2 * sizeof(int)), recv(2 * sizeof(int));
  const int mine[2] = {failed ? 1 : 0, c.rank};
  std::memcpy(send.data(), mine, sizeof mine);
  MPI_Request req = MPI_REQUEST_NULL;
  c.check_mpi(MPI_Iallreduce(send.data(), recv.data(), 1, MPI_2INT, MPI_MAXLOC, c.comm, &req),
              call, "MPI_Iallreduce");
  await(c, call, req, send, recv, 2 * c.init_timeout_s + 1, step);
  int out[2];
  std::memcpy(out, recv.data(), sizeof out);
  return out[0] ? out[1] : -1;
}

void setup(Communicator::Impl& c, const CallInfo& call) {
  // 1. Every rank says whether it can take part and which GPU it would use.
  const Probe mine = probe(c);
  std::vector<std::byte> send(sizeof(Probe));
  std::vector<std::byte> recv(sizeof(Probe) * static_cast<std::size_t>(c.size));
  std::memcpy(send.data(), &mine, sizeof mine);
  MPI_Request req = MPI_REQUEST_NULL;
  c.check_mpi(MPI_Iallgather(send.data(), sizeof(Probe), MPI_BYTE, recv.data(), sizeof(Probe),
                             MPI_BYTE, c.comm, &req),
              call, "MPI_Iallgather");
  await(c, call, req, send, recv, c.init_timeout_s, "the exchange of device probes");
  std::vector<Probe> all(static_cast<std::size_t>(c.size));
  std::memcpy(static_cast<void*>(all.data()), recv.data(), recv.size());
  const DeviceProblem v = verdict(all);
  if (!v.ok()) final_failure(c, call, v.code, v.cause);

#if GRADWIRE_HAVE_NCCL
  // 2. Rank 0 makes the unique id; everyone learns it, or why there is none.
  IdMessage id;
  if (c.rank == 0) {
    const DeviceProblem p = nccl_unique_id(id.id);
    if (!p.ok()) {
      id.code = static_cast<std::int32_t>(p.code);
      put(id.cause, p.cause);
    }
  }
  std::vector<std::byte> idbuf(sizeof id), none;
  std::memcpy(idbuf.data(), &id, sizeof id);
  c.check_mpi(MPI_Ibcast(idbuf.data(), sizeof id, MPI_BYTE, 0, c.comm, &req), call,
              "MPI_Ibcast");
  await(c, call, req, idbuf, none, 2 * c.init_timeout_s + 1, "the broadcast of the NCCL id");
  std::memcpy(&id, idbuf.data(), sizeof id);
  if (id.code != 0) {
    final_failure(c, call, static_cast<ErrorCode>(id.code),
                  "rank 0 could not make the NCCL unique id: " + get(id.cause));
  }

  // 3. NCCL initialisation, then agreement on its outcome: a rank whose peers failed aborts
  //    its own communicator (finalizing it would wait for them forever).
  std::string error;
  auto backend = init_nccl_backend(c, mine.device, id.id, c.init_timeout_s, error);
  const int bad = lowest_failed_rank(c, call, backend == nullptr, "the agreement on NCCL init");
  if (bad >= 0) {
    if (backend) backend->abort();
    final_failure(c, call, ErrorCode::Nccl,
                  "NCCL initialisation failed on rank " + std::to_string(bad) +
                      (bad == c.rank ? ": " + error : " (its own message says why)"));
  }
  c.device = std::move(backend);
#else
  final_failure(c, call, ErrorCode::Internal, "no device backend in this build");
#endif
}

}  // namespace

DeviceBackend& ensure_device(Communicator::Impl& c, const CallInfo& call) {
  if (c.device) return *c.device;
  if (!c.device_failure.empty()) c.fail(c.device_failure_code, call, c.device_failure);
  g_setups.fetch_add(1, std::memory_order_relaxed);
  try {
    setup(c, call);
  } catch (const Error& e) {
    if (c.device_failure.empty()) {
      c.device_failure = std::string("device setup failed: ") + e.what();
      c.device_failure_code = e.code();
    }
    throw;
  }
  return *c.device;
}

void inherit_device(Communicator::Impl& parent, Communicator::Impl& child, int color,
                    bool eager, const CallInfo& call) {
  if (eager) child.options.device_setup = Options::DeviceSetup::Eager;  // for its own splits
  if (!parent.device) {
    if (eager) ensure_device(child, call);
    return;
  }
  g_setups.fetch_add(1, std::memory_order_relaxed);
  std::string error;
  // key = the rank MPI_Comm_split gave: NCCL then orders the ranks exactly as MPI did.
  auto backend = parent.device->split(child, color, child.rank, child.init_timeout_s, error);
  const int bad =
      lowest_failed_rank(child, call, backend == nullptr, "the agreement on ncclCommSplit");
  if (bad >= 0) {
    if (backend) backend->abort();
    child.device_failure = "device setup failed: ncclCommSplit from the parent's NCCL "
                           "communicator failed on rank " + std::to_string(bad) +
                           (bad == child.rank ? ": " + error : " (its own message says why)");
    child.device_failure_code = ErrorCode::Nccl;
    return;
  }
  child.device = std::move(backend);
}

std::uint64_t device_setups_started() noexcept { return g_setups.load(std::memory_order_relaxed); }

}  // namespace gradwire::detail
