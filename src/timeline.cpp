#include "timeline.hpp"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <sched.h>
#include <unordered_set>
#include <vector>

namespace gradwire::timeline {

namespace detail {
std::atomic<Recorder*> g_active{nullptr};
thread_local int t_track = 0;
}  // namespace detail

namespace {

// Tags on the communicator's private duplicate (its dense collectives use no tags).
constexpr int kTagPing = 30041, kTagPong = 30042, kTagSize = 30043, kTagPart = 30044;
constexpr int kPingRounds = 8;
constexpr std::size_t kMaxInterned = 10000;  // error texts beyond this are not kept

// Recorders stay allocated until the process ends: a thread may still hold the pointer it
// loaded just before close() cleared it (their rings are freed at close).
std::mutex g_open_mutex;
std::vector<std::unique_ptr<Recorder>>& all_recorders() {
  static std::vector<std::unique_ptr<Recorder>> v;
  return v;
}

void append_escaped(std::string& out, const char* s) {
  for (; *s; ++s) {
    const unsigned char c = static_cast<unsigned char>(*s);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
}

void append_us(std::string& out, std::int64_t ns) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.3f", static_cast<double>(ns) / 1000.0);
  out += buf;
}

// Polls `r` until it completes or the deadline; past it a receive is cancelled.
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

std::int64_t now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct Recorder::State {
  mutable std::mutex m;
  std::vector<Event> ring;
  std::uint64_t total = 0;  // events added; ring slot = total % capacity
  std::unordered_set<std::string> strings;
  std::vector<const char*> tracks;
  std::int64_t offset_ns = 0, origin_ns = 0;
  bool aligned = false;
};

Recorder::Recorder(std::string path, int rank, int size, std::size_t capacity)
    : path_(std::move(path)), rank_(rank), size_(size), s_(std::make_unique<State>()) {
  s_->ring.resize(std::max<std::size_t>(capacity, 16));
  s_->tracks.push_back(intern("collectives"));
  s_->origin_ns = now_ns();
}

Recorder::~Recorder() = default;

void Recorder::add(const Event& e) noexcept {
  std::lock_guard<std::mutex> lock(s_->m);
  if (s_->ring.empty()) return;  // closed
  s_->ring[s_->total % s_->ring.size()] = e;
  ++s_->total;
}

const char* Recorder::intern(const std::string& s) {
  std::lock_guard<std::mutex> lock(s_->m);
  if (s_->strings.size() >= kMaxInterned) {
    auto it = s_->strings.find(s);
    return it != s_->strings.end() ? it->c_str() : "(text not kept: too many distinct strings)";
  }
  return s_->strings.insert(s).first->c_str();
}

int Recorder::new_track(const std::string& name) {
  const char* n = intern(name);
  std::lock_guard<std::mutex> lock(s_->m);
  s_->tracks.push_back(n);
  return static_cast<int>(s_->tracks.size()) - 1;
}

void Recorder::name_track(int track, const std::string& name) {
  const char* n = intern(name);
  std::lock_guard<std::mutex> lock(s_->m);
  if (track >= 0 && static_cast<std::size_t>(track) < s_->tracks.size())
    s_->tracks[static_cast<std::size_t>(track)] = n;
}

void Recorder::set_clock(std::int64_t offset_ns, std::int64_t origin_ns, bool aligned) {
  std::lock_guard<std::mutex> lock(s_->m);
  s_->offset_ns = offset_ns;
  s_->origin_ns = origin_ns;
  s_->aligned = aligned;
}

void Recorder::stop() noexcept {
  std::lock_guard<std::mutex> lock(s_->m);
  std::vector<Event>().swap(s_->ring);
}

std::uint64_t Recorder::dropped() const {
  std::lock_guard<std::mutex> lock(s_->m);
  return s_->total > s_->ring.size() ? s_->total - s_->ring.size() : 0;
}

std::string Recorder::events_json() const {
  std::vector<Event> ev;
  std::vector<const char*> tracks;
  std::uint64_t dropped = 0;
  std::int64_t shift = 0;
  bool aligned = false;
  {
    std::lock_guard<std::mutex> lock(s_->m);
    const std::size_t cap = s_->ring.size();
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(s_->total, cap));
    ev.assign(s_->ring.begin(), s_->ring.begin() + static_cast<std::ptrdiff_t>(n));
    dropped = s_->total - n;
    tracks = s_->tracks;
    shift = s_->offset_ns - s_->origin_ns;
    aligned = s_->aligned;
  }
  // Every record in time order (an async operation's begin and end apart), enclosing spans
  // before what they enclose at the same start (viewers nest by this order).
  struct Item {
    std::int64_t ts, dur;
    std::uint32_t index;
    bool end;  // an async operation's end
  };
  std::vector<Item> items;
  items.reserve(ev.size() + ev.size() / 4);
  for (std::size_t i = 0; i < ev.size(); ++i) {
    const Event& e = ev[i];
    items.push_back({e.t0, e.dur, static_cast<std::uint32_t>(i), false});
    if (e.kind == Kind::Async) items.push_back({e.t0 + e.dur, 0, static_cast<std::uint32_t>(i), true});
  }
  std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
    return a.ts != b.ts ? a.ts < b.ts : a.dur > b.dur;
  });
  std::string out;
  out.reserve(ev.size() * 160 + 512);
  const std::string pid = std::to_string(rank_);
  out += "{\"ph\":\"M\",\"pid\":" + pid + ",\"name\":\"process_name\",\"args\":{\"name\":\"rank " +
         pid + "\"}}";
  out += ",\n{\"ph\":\"M\",\"pid\":" + pid +
         ",\"name\":\"process_sort_index\",\"args\":{\"sort_index\":" + pid + "}}";
  out += ",\n{\"ph\":\"M\",\"pid\":" + pid + ",\"name\":\"process_labels\",\"args\":{\"labels\":\"";
  out += std::string("ranks ") + std::to_string(size_) + (aligned ? ", clock aligned to rank 0" : ", clock NOT aligned");
  if (dropped) out.append(", ").append(std::to_string(dropped)).append(" earliest events dropped (ring full)");
  out += "\"}}";
  for (std::size_t t = 0; t < tracks.size(); ++t) {
    out += ",\n{\"ph\":\"M\",\"pid\":" + pid + ",\"tid\":" + std::to_string(t) +
           ",\"name\":\"thread_name\",\"args\":{\"name\":\"";
    append_escaped(out, tracks[t]);
    out += "\"}}";
  }
  // Async ids: unique per rank (the rank in the high bits), one per operation.
  const std::uint64_t id_base = static_cast<std::uint64_t>(rank_) << 40;
  for (const Item& it : items) {
    const Event& e = ev[it.index];
    out += ",\n{\"ph\":\"";
    out += it.end ? "e" : e.kind == Kind::Span ? "X" : e.kind == Kind::Instant ? "i" : "b";
    out += "\",\"pid\":" + pid + ",\"tid\":" + std::to_string(e.track) + ",\"ts\":";
    append_us(out, it.ts + shift);
    if (e.kind == Kind::Span) {
      out += ",\"dur\":";
      append_us(out, e.dur);
    }
    if (e.kind == Kind::Instant) out += ",\"s\":\"p\"";
    if (e.kind == Kind::Async) out.append(",\"id\":").append(std::to_string(id_base + it.index));
    out += e.kind == Kind::Async ? ",\"cat\":\"async\",\"name\":\"" : ",\"cat\":\"gradwire\",\"name\":\"";
    append_escaped(out, e.name);
    out += "\",\"args\":{";
    bool comma = false;
    if (e.bytes) out.append("\"bytes\":").append(std::to_string(e.bytes)), comma = true;
    if (e.arg >= 0) out.append(comma ? ",\"n\":" : "\"n\":").append(std::to_string(e.arg)), comma = true;
    if (e.detail) {
      out += comma ? ",\"detail\":\"" : "\"detail\":\"";
      append_escaped(out, e.detail);
      out += "\"";
    }
    out += "}}";
  }
  return out;
}

std::size_t capacity_from_env() {
  const char* v = std::getenv("GRADWIRE_TIMELINE_EVENTS");
  if (!v || !*v) return std::size_t{1} << 18;
  char* end = nullptr;
  const unsigned long long n = std::strtoull(v, &end, 10);
  if (*end != '\0' || n < 16 || n > (1ull << 28)) {
    std::fprintf(stderr,
                 "gradwire: GRADWIRE_TIMELINE_EVENTS='%s' is not a count in [16, 2^28]; using "
                 "262144\n",
                 v);
    return std::size_t{1} << 18;
  }
  return static_cast<std::size_t>(n);
}

void span_since(const char* name, std::int64_t t0, std::uint64_t bytes, std::int64_t arg,
                const char* text) noexcept {
  Recorder* r = active();
  if (!r || t0 == 0) return;
  Event e;
  e.t0 = t0;
  e.dur = now_ns() - t0;
  e.name = name;
  e.bytes = bytes;
  e.arg = arg;
  e.detail = text;
  e.track = detail::t_track;
  r->add(e);
}

void span_between(const char* name, double t0_s, double t1_s, std::uint64_t bytes,
                  std::int64_t arg, const char* text) noexcept {
  Recorder* r = active();
  if (!r) return;
  Event e;
  e.t0 = static_cast<std::int64_t>(t0_s * 1e9);
  e.dur = static_cast<std::int64_t>((t1_s - t0_s) * 1e9);
  e.name = name;
  e.bytes = bytes;
  e.arg = arg;
  e.detail = text;
  e.track = detail::t_track;
  r->add(e);
}

void async_since(const char* name, std::int64_t t0, std::uint64_t bytes, std::int64_t peer) noexcept {
  Recorder* r = active();
  if (!r || t0 == 0) return;
  Event e;
  e.t0 = t0;
  e.dur = now_ns() - t0;
  e.name = name;
  e.bytes = bytes;
  e.arg = peer;
  e.track = detail::t_track;
  e.kind = Kind::Async;
  r->add(e);
}

const char* StageMarks::stage_name(int stage) noexcept {
  static const char* const kNames[] = {"stage 0", "stage 1", "stage 2",  "stage 3",
                                       "stage 4", "stage 5", "stage 6",  "stage 7",
                                       "stage 8", "stage 9", "stage 10", "stage 11"};
  return stage >= 0 && stage < 12 ? kNames[stage] : "stage 12+";
}

void PlanTrack::open(std::uint64_t id, const std::string& what) {
  r_ = active();
  id_ = id;
  what_ = what;
  if (!r_) return;
  track_ = r_->new_track(std::string("plan ").append(std::to_string(id)).append(": ").append(what));
  run_ = r_->intern("run " + what);
}

void PlanTrack::label(const std::string& label) {
  if (!r_ || r_ != active()) return;  // no timeline, or not the one this plan was made under
  label_ = r_->intern(label);
  r_->name_track(track_, label + " (plan " + std::to_string(id_) + ": " + what_ + ")");
}

void PlanTrack::run_done(double t0_s, double t1_s, std::uint64_t wire_bytes,
                         std::uint64_t n) const noexcept {
  if (r_ && r_ == active())
    span_between(run_, t0_s, t1_s, wire_bytes, static_cast<std::int64_t>(n), label_);
}

void instant(const char* name, const std::string& text) noexcept {
  Recorder* r = active();
  if (!r) return;
  try {
    Event e;
    e.t0 = now_ns();
    e.name = name;
    e.detail = r->intern(text);
    e.track = detail::t_track;
    e.kind = Kind::Instant;
    r->add(e);
  } catch (...) {
  }
}

// Each rank pings rank 0 kPingRounds times and keeps the offset of the shortest round trip
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
