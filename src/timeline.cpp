// The timeline's recorder (timeline.hpp): the ring, the spans, the JSON of one rank. Opening
// and closing across ranks: timeline_io.cpp.
#include "timeline.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <unordered_set>
#include <vector>

namespace gradwire::timeline {

namespace detail {
std::atomic<Recorder*> g_active{nullptr};
thread_local int t_track = 0;
}  // namespace detail

namespace {

constexpr std::size_t kMaxInterned = 10000;  // error texts beyond this are not kept

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

namespace {
// One event on the calling thread's track.
void record(Recorder& r, Kind kind, const char* name, std::int64_t t0, std::int64_t dur,
            std::uint64_t bytes, std::int64_t arg, const char* text) noexcept {
  Event e;
  e.t0 = t0;
  e.dur = dur;
  e.name = name;
  e.bytes = bytes;
  e.arg = arg;
  e.detail = text;
  e.track = detail::t_track;
  e.kind = kind;
  r.add(e);
}
}  // namespace

void span_since(const char* name, std::int64_t t0, std::uint64_t bytes, std::int64_t arg,
                const char* text) noexcept {
  Recorder* r = active();
  if (r && t0 != 0) record(*r, Kind::Span, name, t0, now_ns() - t0, bytes, arg, text);
}

void span_between(const char* name, double t0_s, double t1_s, std::uint64_t bytes,
                  std::int64_t arg, const char* text) noexcept {
  Recorder* r = active();
  if (r)
    record(*r, Kind::Span, name, static_cast<std::int64_t>(t0_s * 1e9),
           static_cast<std::int64_t>((t1_s - t0_s) * 1e9), bytes, arg, text);
}

void async_since(const char* name, std::int64_t t0, std::uint64_t bytes, std::int64_t peer) noexcept {
  Recorder* r = active();
  if (r && t0 != 0) record(*r, Kind::Async, name, t0, now_ns() - t0, bytes, peer, nullptr);
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
    record(*r, Kind::Instant, name, now_ns(), 0, 0, -1, r->intern(text));
  } catch (...) {  // intern() may not allocate: the event is lost, not the caller's call
  }
}

// Each rank pings rank 0 kPingRounds times and keeps the offset of the shortest round trip
}  // namespace gradwire::timeline
