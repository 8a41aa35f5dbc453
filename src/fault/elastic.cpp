#include "fault/elastic.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <mutex>
#include <string>
#include <thread>

#include "comm_impl.hpp"
#include "config.hpp"
#include "fault/finalize_bound.hpp"
#include "gradwire/config.hpp"
#include "watchdog.hpp"

#if GRADWIRE_HAVE_ULFM
#include <mpi-ext.h>
#endif

extern char** environ;

namespace gradwire::detail {

namespace {
bool joined_already = false;  // later constructors (split, shrink) in a joiner are ordinary
}

bool spawned_to_join() {
  if (joined_already) return false;
  const char* j = std::getenv("GRADWIRE_JOIN");
  if (!j || std::string(j) != "1") return false;
  MPI_Comm parent = MPI_COMM_NULL;
  MPI_Comm_get_parent(&parent);
  return parent != MPI_COMM_NULL;
}

#if GRADWIRE_HAVE_ULFM

namespace {

// Point-to-point tags on the parent/child intercommunicator (nothing else is sent on it).
constexpr int kReadyTag = 0x67770;  // joiner -> spawning rank 0: MPI_Init done, alive
constexpr int kGoTag = 0x67771;     // spawning rank 0 -> joiner: the agreed verdict
constexpr int kEnvTag = 0x67772;    // spawning rank 0 -> joiner: its environment

// What the spawning ranks tell a joiner once they agree (verdict 0: abandoned).
struct JoinHeader {
  std::int32_t verdict = 0;
  std::int32_t key = 0;         // its rank in the grown communicator
  std::int32_t state_root = 0;  // share_state()'s source rank there
  std::int32_t env_length = 0;  // bytes of the environment message that follows
  std::uint64_t step = 0;
};

double deadline_in(double seconds) { return MPI_Wtime() + seconds; }

// Polls `reqs` until all complete, an error, or the deadline; leaks them on failure (MPI may
// still write the buffers, which the caller keeps alive for the process's life).
bool wait_until(std::vector<MPI_Request>& reqs, double deadline, std::string& why) {
  while (true) {
    int done = 0;
    const int rc = MPI_Testall(static_cast<int>(reqs.size()), reqs.data(), &done,
                               MPI_STATUSES_IGNORE);
    if (rc != MPI_SUCCESS) {
      why = "a joiner failed before it was merged (MPI error " + std::to_string(rc) + ")";
      return false;
    }
    if (done) return true;
    if (MPI_Wtime() > deadline) {
      why = "a joiner did not report within GRADWIRE_INIT_TIMEOUT (dead or stalled)";
      return false;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

// Options::spawn_command, else this process's executable and arguments.
std::vector<std::string> spawn_command(const Options& o) {
  if (!o.spawn_command.empty()) return o.spawn_command;
  std::vector<std::string> cmd;
  std::ifstream f("/proc/self/cmdline", std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  for (std::size_t at = 0; at < all.size();) {
    const std::size_t end = all.find('\0', at);
    cmd.push_back(all.substr(at, end == std::string::npos ? std::string::npos : end - at));
    if (end == std::string::npos) break;
    at = end + 1;
  }
  char exe[4096];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0 && !cmd.empty()) cmd[0].assign(exe, static_cast<std::size_t>(n));
  return cmd;
}

// This rank's environment for the joiners (mpirun's -x variables do not reach spawned
// processes, and MPI_Info values stop at 256 bytes, so it travels as a message), less what
// the runtime sets per process. '\0'-separated.
std::string joiner_environment() {
  std::string env;
  for (char** e = environ; e && *e; ++e) {
    const std::string v = *e;
    const bool runtime = (v.rfind("OMPI_", 0) == 0 && v.rfind("OMPI_MCA_", 0) != 0) ||
                         v.rfind("PMIX_", 0) == 0 || v.rfind("PRTE_", 0) == 0 ||
                         v.rfind("GRADWIRE_JOIN=", 0) == 0;
    if (!runtime) env += v + '\0';
  }
  return env;
}

// What the joiner does not have yet of the spawning rank's environment (its own values win).
void adopt_environment(const std::vector<char>& env) {
  for (std::size_t at = 0; at < env.size();) {
    const std::string v(&env[at]);
    at += v.size() + 1;
    const std::size_t eq = v.find('=');
    if (eq != std::string::npos && eq > 0) setenv(v.substr(0, eq).c_str(), v.c_str() + eq + 1, 0);
  }
}

// What a merge produced; shared with the thread that runs it, which may outlive the wait.
struct MergeJob {
  std::mutex mu;
  std::condition_variable done_cv;
  bool done = false;
  MPI_Comm merged = MPI_COMM_NULL;
  MPI_Comm ordered = MPI_COMM_NULL;
  std::string why;  // empty: both made
};

void run_merge(MPI_Comm inter, int high, int key, MergeJob& job) {
  MPI_Comm merged = MPI_COMM_NULL, ordered = MPI_COMM_NULL;
  std::string why;
  if (MPI_Intercomm_merge(inter, high, &merged) != MPI_SUCCESS) {
    merged = MPI_COMM_NULL, why = "MPI_Intercomm_merge failed";
  } else {
    MPI_Comm_set_errhandler(merged, MPI_ERRORS_RETURN);
    if (MPI_Comm_split(merged, 0, key, &ordered) != MPI_SUCCESS)
      ordered = MPI_COMM_NULL, why = "MPI_Comm_split of the merged communicator failed";
  }
  std::lock_guard lock(job.mu);
  job.merged = merged, job.ordered = ordered, job.why = why, job.done = true;
  job.done_cv.notify_all();
}

// MPI_Intercomm_merge of `inter`, then the split that orders it by key, within `limit`
// seconds. Open MPI 5.0's merge never returns once a process of the intercommunicator has
// died: its context-id agreement (ompi_comm_nextcid) drops the failed reduction's error and
// retries forever, and neither MPIX_Comm_revoke of the intercommunicator nor a failure
// acknowledgement stops it (tried). So where MPI gives MPI_THREAD_MULTIPLE the merge runs on
// a thread of its own and is abandoned past the deadline: that thread keeps spinning in
// Open MPI for the rest of the process (docs/fault-tolerance.md says what that costs), and the
// caller learns `false` in bounded time, to agree on with the others. Without
// MPI_THREAD_MULTIPLE nothing can wait beside the merge: the watchdog ends the job instead.
bool merge_within(MPI_Comm inter, int high, int key, double limit, WatchSlot& watch,
                  const CallInfo& call, MPI_Comm& merged, MPI_Comm& ordered, std::string& why) {
  int level = MPI_THREAD_SINGLE;
  MPI_Query_thread(&level);
  auto job = std::make_shared<MergeJob>();
  if (level < MPI_THREAD_MULTIPLE) {
    Armed guard(watch, limit, call);
    run_merge(inter, high, key, *job);
  } else {
    std::thread([inter, high, key, job] { run_merge(inter, high, key, *job); }).detach();
    std::unique_lock lock(job->mu);
    const auto until_done = [&] { return job->done; };
    if (!job->done_cv.wait_for(lock, std::chrono::duration<double>(limit), until_done)) {
      bound_finalize(limit);  // the spinning merge can keep MPI_Finalize from returning
      why = "MPI_Intercomm_merge did not complete within GRADWIRE_INIT_TIMEOUT (a process of the "
            "intercommunicator died inside it; Open MPI 5.0 cannot interrupt it: left to spin on "
            "a thread of its own)";
      return false;
    }
  }
  merged = job->merged, ordered = job->ordered, why = job->why;
  return why.empty();
}

}  // namespace

std::shared_ptr<Communicator::Impl> grow_onto(const std::shared_ptr<Communicator::Impl>& base,
                                              int my_key, const std::vector<int>& joiner_keys,
                                              std::uint64_t step, const CallInfo& call) {
  Communicator::Impl& b = *base;
  const int k = static_cast<int>(joiner_keys.size());
  const double limit = b.init_timeout_s;

  // Where to resume: the furthest caller's step; the state comes from the lowest of those.
  // (Its rank in the result, and in base for when growing fails: keys keep base's order.)
  std::uint64_t agreed = step;
  int root[2] = {INT_MAX, INT_MAX};
  {
    Armed guard(b.watch, b.timeout_s, call);
    b.check_mpi(MPI_Allreduce(MPI_IN_PLACE, &agreed, 1, MPI_UINT64_T, MPI_MAX, b.comm), call,
                "MPI_Allreduce");
    if (step == agreed) root[0] = my_key, root[1] = b.rank;
    b.check_mpi(MPI_Allreduce(MPI_IN_PLACE, root, 2, MPI_INT, MPI_MIN, b.comm), call,
                "MPI_Allreduce");
  }
  b.resume_step = agreed;
  b.state_root = root[1];
  if (k == 0) return base;

  int ok = 1;
  std::string why;
  MPI_Comm inter = MPI_COMM_NULL;
  {
    Armed guard(b.watch, limit, call);
    const std::vector<std::string> cmd = spawn_command(b.options);
    std::vector<char*> argv;
    for (std::size_t i = 1; i < cmd.size(); ++i) argv.push_back(const_cast<char*>(cmd[i].c_str()));
    argv.push_back(nullptr);
    MPI_Info info;
    MPI_Info_create(&info);
    MPI_Info_set(info, "PMIX_ENVAR", "GRADWIRE_JOIN=1");
    std::vector<int> errcodes(static_cast<std::size_t>(k), MPI_SUCCESS);
    const int rc = MPI_Comm_spawn(cmd.empty() ? "" : cmd[0].c_str(), argv.data(), k, info, 0,
                                  b.comm, &inter, errcodes.data());
    MPI_Info_free(&info);
    if (rc != MPI_SUCCESS || inter == MPI_COMM_NULL) {
      ok = 0;
      why = "MPI_Comm_spawn of '" + (cmd.empty() ? std::string() : cmd[0]) + "' failed";
    }
    for (int e : errcodes)
      if (ok && e != MPI_SUCCESS) ok = 0, why = "a spawned process did not start";
  }
  if (inter != MPI_COMM_NULL) MPI_Comm_set_errhandler(inter, MPI_ERRORS_RETURN);

  // Open MPI 5.0's MPI_Intercomm_merge never returns when a joiner has died (its context-id
  // agreement spins on the failure), and an MPIX_Comm_agree on the intercommunicator does not
  // either: rank 0 hears from every joiner first, and the survivors agree on that among
  // themselves. Joiners that report are alive; one dying after it reported is the window
  // the watchdog bounds below.
  int* ready = nullptr;  // 1: joiner j reported
  if (ok && b.rank == 0) {
    ready = new int[static_cast<std::size_t>(k)]();  // leaked if a receive is abandoned
    std::vector<MPI_Request> reqs(static_cast<std::size_t>(k), MPI_REQUEST_NULL);
    for (int j = 0; j < k; ++j)
      MPI_Irecv(&ready[j], 1, MPI_INT, j, kReadyTag, inter, &reqs[static_cast<std::size_t>(j)]);
    if (!wait_until(reqs, deadline_in(limit), why)) ok = 0;
  }
  const std::unique_ptr<int[]> reported(ok ? ready : nullptr);  // else leaked: MPI may write
  {
    Armed guard(b.watch, b.timeout_s, call);
    const int rc = MPIX_Comm_agree(b.comm, &ok);
    if (rc != MPI_SUCCESS) b.check_mpi(rc, call, "MPIX_Comm_agree");  // a survivor died
  }
  const int new_size = b.size + k;
  // tell_joiners: before the merge, joiners that reported wait for a verdict; after it they
  // learn from the revoked communicator instead (and a send to one that has exited is fatal
  // in Open MPI once its request is freed).
  auto abandon = [&](const std::string& reason, bool tell_joiners) {
    if (b.rank == 0) {
      std::fprintf(stderr, "gradwire: %s: growing to %d ranks abandoned on every rank (%s); "
                           "going on with %d\n",
                   call.collective, new_size, reason.c_str(), b.size);
      std::fflush(stderr);
    }
    if (tell_joiners && b.rank == 0 && inter != MPI_COMM_NULL && ready) {
      // Only to those that reported: a send to a dead joiner can block in Open MPI 5.0.
      static JoinHeader no;  // outlives the sends, which are not waited for
      for (int j = 0; j < k; ++j) {
        if (!ready[j]) continue;
        MPI_Request r;
        if (MPI_Isend(&no, sizeof no, MPI_BYTE, j, kGoTag, inter, &r) == MPI_SUCCESS)
          MPI_Request_free(&r);
      }
    }
    // The intercommunicator is leaked: freeing it after a joiner died hung Open MPI 5.0.
    return base;
  };
  if (!ok) return abandon(why.empty() ? "failed on another rank" : why, true);

  if (b.rank == 0) {
    const std::string env = joiner_environment();
    for (int j = 0; j < k; ++j) {
      JoinHeader h;
      h.verdict = 1;
      h.key = joiner_keys[static_cast<std::size_t>(j)];
      h.state_root = root[0];
      h.step = agreed;
      h.env_length = static_cast<std::int32_t>(env.size());
      // The joiner is alive (it reported) and waits for both, bounded.
      MPI_Send(&h, sizeof h, MPI_BYTE, j, kGoTag, inter);
      MPI_Send(env.data(), h.env_length, MPI_CHAR, j, kEnvTag, inter);
    }
  }
  MPI_Comm merged = MPI_COMM_NULL, ordered = MPI_COMM_NULL;
  std::shared_ptr<Communicator::Impl> grown;
  if (!merge_within(inter, 0, my_key, limit, b.watch, call, merged, ordered, why)) ok = 0;
  if (ok) {
    Options o = b.options;
    o.timeout_s = b.timeout_s;
    o.init_timeout_s = b.init_timeout_s;
    o.on_timeout = Options::Policy::Return;  // a dead joiner: an error here, agreed below
    o.check = b.checked ? 1 : 0;
    o.on_failure = b.fault->respawn  ? Options::FailurePolicy::Respawn
                   : b.fault->shrink ? Options::FailurePolicy::Shrink
                                     : Options::FailurePolicy::Abort;
    try {
      grown = std::make_shared<Communicator::Impl>(ordered, o);
      grown->policy = b.policy;
    } catch (const Error& e) {
      ok = 0, why = std::string("the grown communicator's rendezvous failed: ") + e.what();
    }
  }
  // The joiners that are alive learn of an abandoned growth at their next call (revoked:
  // PeerFailed).
  auto revoke_grown = [&] {
    for (MPI_Comm c : {grown ? grown->comm : MPI_COMM_NULL, ordered, merged})
      if (c != MPI_COMM_NULL) MPIX_Comm_revoke(c);
    if (grown) grown->pending_leaked = true;
    grown.reset();
  };
  {
    Armed guard(b.watch, b.timeout_s, call);
    const int rc = MPIX_Comm_agree(b.comm, &ok);
    if (rc != MPI_SUCCESS) {
      revoke_grown();  // a survivor died: PeerFailed from base, on every survivor
      b.check_mpi(rc, call, "MPIX_Comm_agree");
    }
  }
  if (!ok) {
    revoke_grown();
    return abandon(why.empty() ? "failed on another rank" : why, false);
  }
  MPI_Comm_free(&ordered);
  MPI_Comm_free(&merged);
  MPI_Comm_free(&inter);
  grown->resume_step = agreed;
  grown->state_root = root[0];
  return grown;
}

std::shared_ptr<Communicator::Impl> join_running_job(const Options& o) {
  joined_already = true;
  MPI_Comm parent = MPI_COMM_NULL;
  MPI_Comm_get_parent(&parent);
  MPI_Comm_set_errhandler(parent, MPI_ERRORS_RETURN);
  const double limit =
      o.init_timeout_s > 0 ? o.init_timeout_s : env_timeout("GRADWIRE_INIT_TIMEOUT", 300);
  CallInfo call;
  call.collective = "join";
  call.has_data = false;
  int wr = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &wr);
  auto fail = [&](ErrorCode code, const std::string& why) {
    throw Error(code, "gradwire: joining process " + std::to_string(wr) + ": " + why);
  };
  static int one = 1;
  static JoinHeader h;
  MPI_Request reqs[2];
  if (MPI_Isend(&one, 1, MPI_INT, 0, kReadyTag, parent, &reqs[0]) != MPI_SUCCESS ||
      MPI_Irecv(&h, sizeof h, MPI_BYTE, 0, kGoTag, parent, &reqs[1]) != MPI_SUCCESS) {
    fail(ErrorCode::PeerFailed, "cannot reach the running job");
  }
  std::vector<MPI_Request> r(reqs, reqs + 2);
  std::string why;
  if (!wait_until(r, deadline_in(limit), why)) {
    fail(ErrorCode::Timeout, "no verdict from the running job within " + std::to_string(limit) +
                                 " s (GRADWIRE_INIT_TIMEOUT)");
  }
  if (!h.verdict) {
    fail(ErrorCode::PeerFailed,
         "the running job abandoned this join (a spawn failed or another joiner died); exit");
  }
  {
    std::vector<char> env(static_cast<std::size_t>(std::max(h.env_length, 0)) + 1, '\0');
    std::vector<MPI_Request> e(1);
    MPI_Irecv(env.data(), h.env_length, MPI_CHAR, 0, kEnvTag, parent, &e[0]);
    if (!wait_until(e, deadline_in(limit), why))
      fail(ErrorCode::Timeout, "the running job's environment did not arrive: " + why);
    env.pop_back();
    adopt_environment(env);
  }
  WatchSlot watch([wr](const CallInfo& c, double s) {
    std::fprintf(stderr, "gradwire: joining process %d: %s did not complete within %g s "
                         "(GRADWIRE_INIT_TIMEOUT); aborting\n", wr, c.collective, s);
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    std::_Exit(1);
  });
  MPI_Comm merged = MPI_COMM_NULL, ordered = MPI_COMM_NULL;
  if (!merge_within(parent, 1, h.key, limit, watch, call, merged, ordered, why))
    fail(ErrorCode::PeerFailed, "merging with the running job failed: " + why);
  Options mine = o;
  mine.init_timeout_s = limit;
  auto impl = std::make_shared<Communicator::Impl>(ordered, mine);
  MPI_Comm_free(&ordered);
  MPI_Comm_free(&merged);
  impl->joined = true;
  impl->resume_step = h.step;
  impl->state_root = h.state_root;
  return impl;
}

#else  // no ULFM: nothing to agree with, so no growing

std::shared_ptr<Communicator::Impl> grow_onto(const std::shared_ptr<Communicator::Impl>& base,
                                              int, const std::vector<int>&, std::uint64_t,
                                              const CallInfo& call) {
  base->fail(ErrorCode::Unsupported, call,
             std::string(call.collective) +
                 "() needs an MPI with the ULFM extension (MPIX_Comm_agree, MPIX_Comm_shrink; "
                 "Open MPI 5 run with mpirun --with-ft ulfm); this build's MPI has none: "
                 "rebuild with -DMPI_HOME=<Open MPI 5 prefix>");
}

std::shared_ptr<Communicator::Impl> join_running_job(const Options&) {
  throw Error(ErrorCode::Unsupported,
              "gradwire: this process was spawned to join a running job (GRADWIRE_JOIN=1), but "
              "this build's MPI has no ULFM extension");
}

#endif

}  // namespace gradwire::detail
