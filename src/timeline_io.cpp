// The timeline's life cycle across ranks (timeline.hpp): opening with the clocks aligned to
// rank 0, and at the end the gather to rank 0 and the files, every wait bounded.
#include "timeline.hpp"

#include <algorithm>
#include <climits>
#include <cstdio>
#include <fstream>
#include <memory>
#include <mutex>
#include <sched.h>
#include <string>
#include <vector>

namespace gradwire::timeline {

namespace {

// Tags on the communicator's private duplicate (its dense collectives use no tags).
constexpr int kTagPing = 30041, kTagPong = 30042, kTagSize = 30043, kTagPart = 30044;
constexpr int kPingRounds = 8;

// Recorders stay allocated until the process ends: a thread may still hold the pointer it
// loaded just before close() cleared it (their rings are freed at close).
std::mutex g_open_mutex;
std::vector<std::unique_ptr<Recorder>>& all_recorders() {
  static std::vector<std::unique_ptr<Recorder>> v;
  return v;
}

// Polls `r` until it completes or the deadline (false then).
bool wait_until(MPI_Request* r, std::int64_t deadline_ns) {
  int done = 0;
  while (true) {
    if (MPI_Test(r, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) return false;
    if (done) return true;
    if (now_ns() > deadline_ns) return false;
    sched_yield();
  }
}

void abandon(MPI_Request* r) {
  if (*r == MPI_REQUEST_NULL) return;
  MPI_Cancel(r);
  MPI_Request_free(r);
}

std::int64_t deadline_after(double s) {
  const double ns = std::min(s, 3600.0) * 1e9;
  return now_ns() + static_cast<std::int64_t>(ns);
}

std::string part_path(const std::string& path, int rank) {
  return path + ".rank" + std::to_string(rank) + ".json";
}

bool write_file(const std::string& path, const std::string& head, const std::string& body,
                const std::string& tail) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << head << body << tail;
  f.close();
  if (!f) std::fprintf(stderr, "gradwire: timeline: could not write %s\n", path.c_str());
  return static_cast<bool>(f);
}

// The n-th timeline a process opens writes "trace.json", then "trace.2.json", ...
std::string numbered(const std::string& path, int n) {
  if (n <= 1) return path;
  const std::size_t dot = path.rfind('.');
  const std::size_t slash = path.rfind('/');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash))
    return path + "." + std::to_string(n);
  return path.substr(0, dot) + "." + std::to_string(n) + path.substr(dot);
}

// MPI_Finalize runs MPI_COMM_SELF's attribute delete callbacks first: a timeline still open
// then (a communicator never destroyed) is written as this rank's part.
int on_finalize(MPI_Comm, int, void*, void*) {
  write_own_part();
  return MPI_SUCCESS;
}

void hook_finalize_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    int key = MPI_KEYVAL_INVALID;
    if (MPI_Comm_create_keyval(MPI_COMM_NULL_COPY_FN, on_finalize, &key, nullptr) == MPI_SUCCESS)
      MPI_Comm_set_attr(MPI_COMM_SELF, key, nullptr);
  });
}


}  // namespace

// (rank 0's clock at the midpoint, as NTP does); rank 0 also hands out its time origin.
bool open(const std::string& path, MPI_Comm comm, double deadline_s) {
  if (path.empty()) return false;
  std::lock_guard<std::mutex> lock(g_open_mutex);
  if (active()) return false;  // one timeline per process; later communicators record into it
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  auto& recs = all_recorders();
  recs.push_back(std::make_unique<Recorder>(numbered(path, static_cast<int>(recs.size()) + 1),
                                            rank, size, capacity_from_env()));
  Recorder* r = recs.back().get();
  const std::int64_t deadline = deadline_after(deadline_s);
  bool ok = true;
  std::int64_t offset = 0, origin = now_ns();
  if (rank == 0) {
    for (int peer = 1; peer < size && ok; ++peer) {
      for (int k = 0; k < kPingRounds && ok; ++k) {
        std::int64_t ping = 0;
        MPI_Request q = MPI_REQUEST_NULL;
        MPI_Irecv(&ping, 1, MPI_INT64_T, peer, kTagPing, comm, &q);
        if (!(ok = wait_until(&q, deadline))) abandon(&q);
        std::int64_t pong[2] = {now_ns(), origin};
        MPI_Request s = MPI_REQUEST_NULL;
        if (ok) MPI_Isend(pong, 2, MPI_INT64_T, peer, kTagPong, comm, &s);
        if (ok && !(ok = wait_until(&s, deadline))) abandon(&s);
      }
    }
  } else {
    std::int64_t best = INT64_MAX;
    for (int k = 0; k < kPingRounds && ok; ++k) {
      std::int64_t pong[2] = {0, 0}, ping = k;
      MPI_Request q[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
      MPI_Irecv(pong, 2, MPI_INT64_T, 0, kTagPong, comm, &q[0]);
      const std::int64_t t1 = now_ns();
      MPI_Isend(&ping, 1, MPI_INT64_T, 0, kTagPing, comm, &q[1]);
      ok = wait_until(&q[1], deadline) && wait_until(&q[0], deadline);
      const std::int64_t t2 = now_ns();
      if (!ok) {
        abandon(&q[0]);
        abandon(&q[1]);
        break;
      }
      if (t2 - t1 < best) best = t2 - t1, offset = pong[0] - (t1 + t2) / 2;
      origin = pong[1];
    }
    if (!ok) offset = 0, origin = now_ns();
  }
  if (!ok)
    std::fprintf(stderr,
                 "gradwire: rank %d: timeline: clocks not aligned with rank 0 within %.0f s; "
                 "this rank's times are its own\n",
                 rank, deadline_s);
  r->set_clock(offset, origin, ok);
  hook_finalize_once();
  detail::g_active.store(r, std::memory_order_release);
  return true;
}


namespace {

// Stops recording; the recorder itself stays (see all_recorders).
Recorder* take_active() {
  Recorder* r = detail::g_active.exchange(nullptr, std::memory_order_acq_rel);
  return r;
}


}  // namespace

void write_own_part() noexcept {
  Recorder* r = take_active();
  if (!r) return;
  try {
    const std::string p = part_path(r->path(), r->rank());
    const bool written = write_file(p, "{\"traceEvents\":[\n", r->events_json(), "\n]}\n");
    r->stop();
    if (written)
      std::fprintf(stderr,
                   "gradwire: rank %d: timeline part written to %s (join the parts with "
                   "scripts/timeline_merge.py)\n",
                   r->rank(), p.c_str());
  } catch (...) {
  }
}

void close(MPI_Comm comm, bool usable, double deadline_s) noexcept {
  Recorder* r = take_active();
  if (!r) return;
  try {
    int rank = 0, size = 1;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    std::string mine = r->events_json();
    const std::int64_t deadline = deadline_after(deadline_s);
    auto own_part = [&](const std::string& events) {
      write_file(part_path(r->path(), rank), "{\"traceEvents\":[\n", events, "\n]}\n");
      std::fprintf(stderr, "gradwire: rank %d: timeline part written to %s\n", rank,
                   part_path(r->path(), rank).c_str());
    };
    if (!usable || mine.size() > static_cast<std::size_t>(INT_MAX)) return own_part(mine);
    if (rank != 0) {
      std::int64_t n = static_cast<std::int64_t>(mine.size());
      MPI_Request q[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
      MPI_Isend(&n, 1, MPI_INT64_T, 0, kTagSize, comm, &q[0]);
      MPI_Isend(mine.data(), static_cast<int>(n), MPI_CHAR, 0, kTagPart, comm, &q[1]);
      if (!(wait_until(&q[0], deadline) && wait_until(&q[1], deadline))) {
        // Rank 0 is gone or late: MPI may still read the buffer, so it is leaked with the
        // requests (moved, so the buffer MPI reads is the one kept).
        own_part(*new std::string(std::move(mine)));
      }
      return;
    }
    // Rank 0: the size of each part, then the part, as they come.
    std::vector<std::int64_t> sizes(static_cast<std::size_t>(size), -1);
    std::vector<std::string> parts(static_cast<std::size_t>(size));
    std::vector<MPI_Request> q(2 * static_cast<std::size_t>(size), MPI_REQUEST_NULL);
    std::vector<char> got(static_cast<std::size_t>(size), 0);
    got[0] = 1;
    for (int p = 1; p < size; ++p)
      MPI_Irecv(&sizes[static_cast<std::size_t>(p)], 1, MPI_INT64_T, p, kTagSize, comm,
                &q[2 * static_cast<std::size_t>(p)]);
    int left = size - 1;
    while (left > 0 && now_ns() < deadline) {
      for (int p = 1; p < size; ++p) {
        const std::size_t u = static_cast<std::size_t>(p);
        if (got[u]) continue;
        int done = 0;
        if (q[2 * u] != MPI_REQUEST_NULL) {
          MPI_Test(&q[2 * u], &done, MPI_STATUS_IGNORE);
          if (done) {
            parts[u].resize(static_cast<std::size_t>(sizes[u]));
            MPI_Irecv(parts[u].data(), static_cast<int>(sizes[u]), MPI_CHAR, p, kTagPart, comm,
                      &q[2 * u + 1]);
          }
        } else if (q[2 * u + 1] != MPI_REQUEST_NULL) {
          MPI_Test(&q[2 * u + 1], &done, MPI_STATUS_IGNORE);
          if (done) got[u] = 1, --left;
        }
      }
      sched_yield();
    }
    std::string missing, body = mine;
    for (int p = 1; p < size; ++p) {
      const std::size_t u = static_cast<std::size_t>(p);
      if (got[u]) {
        if (!parts[u].empty()) body.append(",\n").append(parts[u]);
        continue;
      }
      missing.append(missing.empty() ? "" : ",").append(std::to_string(p));
      abandon(&q[2 * u]);
      abandon(&q[2 * u + 1]);
      new std::string(std::move(parts[u]));  // MPI may still write it
    }
    const std::string tail = "\n],\"displayTimeUnit\":\"ms\",\"otherData\":{\"ranks\":" +
                             std::to_string(size) + ",\"missing_ranks\":[" + missing + "]}}\n";
    if (write_file(r->path(), "{\"traceEvents\":[\n", body, tail) && !missing.empty()) {
      std::fprintf(stderr,
                   "gradwire: rank 0: timeline %s lacks rank(s) %s (no part within %.0f s); "
                   "their own parts, where written, are %s.rank<r>.json: "
                   "scripts/timeline_merge.py joins them\n",
                   r->path().c_str(), missing.c_str(), deadline_s, r->path().c_str());
    }
  } catch (...) {
  }
  r->stop();
}


}  // namespace gradwire::timeline
