// The timeline (GRADWIRE_TIMELINE=path, Options::timeline; docs/timeline.md): every rank records
// its dense collectives and plan runs, with their stages, waits and bytes, into a bounded ring,
// and at the end rank 0 writes one Chrome trace event file (one process per rank, one track per
// plan) that Perfetto and chrome://tracing open.
//
// Off, every recording point is a load of a null pointer and a branch. On, a span is two clock
// reads and one store into the ring under an uncontended mutex.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include <mpi.h>

namespace gradwire::timeline {

class Recorder;

namespace detail {
extern std::atomic<Recorder*> g_active;
extern thread_local int t_track;  // where spans of this thread go (0: dense collectives)
}  // namespace detail

// The recorder of this process, or null when the timeline is off.
inline Recorder* active() noexcept { return detail::g_active.load(std::memory_order_acquire); }

std::int64_t now_ns() noexcept;

enum class Kind : char { Span, Instant, Async };

// One record: fixed size, strings static or interned by the recorder (they live as long as it).
struct Event {
  std::int64_t t0 = 0, dur = 0;  // local monotonic ns
  const char* name = "";
  const char* detail = nullptr;  // "algorithm", error text, ... (args.detail)
  std::uint64_t bytes = 0;
  std::int64_t arg = -1;         // stage index, peer, step (args.n); -1: none
  int track = 0;
  Kind kind = Kind::Span;
};

class Recorder {
 public:
  // capacity: events kept (the latest; older ones are dropped and counted).
  Recorder(std::string path, int rank, int size, std::size_t capacity);
  ~Recorder();
  void add(const Event& e) noexcept;
  // Strings that events point to: kept until the recorder goes (deduplicated).
  const char* intern(const std::string& s);
  // A new track (a plan); its name can change later (labels).
  int new_track(const std::string& name);
  void name_track(int track, const std::string& name);
  const std::string& path() const { return path_; }
  int rank() const { return rank_; }
  // This rank's events as Chrome trace JSON objects, comma-separated, timestamps aligned.
  std::string events_json() const;
  void set_clock(std::int64_t offset_ns, std::int64_t origin_ns, bool aligned);
  std::uint64_t dropped() const;
  void stop() noexcept;  // frees the ring; later events are ignored

  struct State;

 private:
  std::string path_;
  int rank_, size_;
  std::unique_ptr<State> s_;
};

// Communicator construction: where a timeline is asked for (path non-empty) and none is
// recording yet, opens one for this process, with the clock aligned to rank 0's through `comm`
// (a few ping-pongs, bounded by deadline_s; unaligned clocks are marked, not fatal). Returns
// whether this call opened it (the communicator then closes it).
bool open(const std::string& path, MPI_Comm comm, double deadline_s);
// Communicator release: rank 0 gathers every rank's events and writes the merged file; a rank
// whose part does not arrive within deadline_s is named, and ranks that could not send theirs
// write "<path>.rank<r>.json" (scripts/timeline_merge.py joins them). `usable` false (a peer
// is gone): no communication, every rank writes its own part.
void close(MPI_Comm comm, bool usable, double deadline_s) noexcept;
// The job is being aborted (a timeout, a dead peer): this rank's part, no communication.
void write_own_part() noexcept;

// Spans: a scope's time on the current track (one-line instrumentation points).
class Span {
 public:
  // name null: records nothing.
  explicit Span(const char* name, std::uint64_t bytes = 0, std::int64_t arg = -1) noexcept
      : r_(name ? active() : nullptr) {
    if (r_) e_.name = name, e_.bytes = bytes, e_.arg = arg, e_.t0 = now_ns();
  }
  ~Span() {
    if (r_) e_.dur = now_ns() - e_.t0, e_.track = detail::t_track, r_->add(e_);
  }
  Span(const Span&) = delete;
  Span& operator=(const Span&) = delete;

 private:
  Recorder* r_;
  Event e_;
};

// Records [t0, now) on the current track; t0 from now_ns() (0 when the timeline was off).
void span_since(const char* name, std::int64_t t0, std::uint64_t bytes = 0, std::int64_t arg = -1,
                const char* text = nullptr) noexcept;
// The same from the seconds of the PlanStats clock (steady_clock, as now_s() in the plans).
void span_between(const char* name, double t0_s, double t1_s, std::uint64_t bytes = 0,
                  std::int64_t arg = -1, const char* text = nullptr) noexcept;
// An operation in flight from t0 until now (a send, a receive; overlapping ones allowed):
// Chrome's async events, on tracks of their own under the rank.
void async_since(const char* name, std::int64_t t0, std::uint64_t bytes, std::int64_t peer) noexcept;
// A point event (errors, timeouts), text copied.
void instant(const char* name, const std::string& text) noexcept;

// Sets the current track for a scope (a plan's begin and polls).
class OnTrack {
 public:
  explicit OnTrack(int track) noexcept : prev_(detail::t_track) { detail::t_track = track; }
  ~OnTrack() { detail::t_track = prev_; }
  OnTrack(const OnTrack&) = delete;
  OnTrack& operator=(const OnTrack&) = delete;

 private:
  int prev_;
};

// The stage loop's marks (collectives/staged.hpp): "stage k" from the start of its local work
// until its operations have all completed, and inside it "exchange", from the last post to that
// completion (the wait on peers; decodes of arrivals nest inside it), with the bytes sent.
class StageMarks {
 public:
  void start() noexcept { t0_ = active() ? now_ns() : 0; }
  // After the stage's local work; `finished`: nothing was posted, the run ends here.
  void posted(bool finished, int stage, std::uint64_t sent) noexcept {
    if (!t0_) return;
    if (finished) return span_since(stage_name(stage), t0_, 0, stage);
    posted_ = now_ns();
    sent0_ = sent;
  }
  void completed(int stage, std::uint64_t sent) noexcept {
    if (!t0_) return;
    span_since("exchange", posted_, sent - sent0_, stage);
    span_since(stage_name(stage), t0_, 0, stage);
  }
  static const char* stage_name(int stage) noexcept;

 private:
  std::int64_t t0_ = 0, posted_ = 0;
  std::uint64_t sent0_ = 0;
};

// A plan's place on the timeline: a track of its own, named "plan <id>: <what>" or, once
// labelled, "<label> (plan <id>: <what>)"; each run a span named "run <what>" there.
class PlanTrack {
 public:
  void open(std::uint64_t id, const std::string& what);  // what: "allreduce sra q8"
  void label(const std::string& label);
  int track() const noexcept { return track_; }
  // A run from the PlanStats clock's readings; n: the plan's step.
  void run_done(double t0_s, double t1_s, std::uint64_t wire_bytes, std::uint64_t n) const noexcept;

 private:
  Recorder* r_ = nullptr;  // the recorder the track belongs to
  int track_ = 0;
  std::uint64_t id_ = 0;
  std::string what_;
  const char* run_ = "run";
  const char* label_ = nullptr;
};

// GRADWIRE_TIMELINE_EVENTS: events kept per rank (default 2^18, 14 MiB; the JSON part about
// 40 MB at most).
std::size_t capacity_from_env();

}  // namespace gradwire::timeline
