// Pieces the compressed algorithms share (collectives/algorithms/*.cpp): codec timing, the
// avg division, bucket-aligned chunking and the stage loop.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "collectives/algorithms.hpp"
#include "collectives/run_error.hpp"
#include "collectives/slowdown.hpp"
#include "timeline.hpp"
#include "transport/element_ops.hpp"

namespace gradwire::coll {

// Message tags of the point-to-point algorithms, one per exchange (distinct across files, so
// a stray message can never be taken for another algorithm's).
constexpr int kTagReduce = 1, kTagGather = 2, kTagScatter = 3;

inline double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Adds the time of a scope to a counter (encode_s / decode_s) and, when the timeline is on,
// records it there as a span named `name` from the same clock readings.
struct Timed {
  Timed(double& acc, const char* name) : acc_(acc), name_(name), t0_(now_s()) {}
  ~Timed() {
    slow_down(now_s() - t0_);  // GRADWIRE_SLOW_RANK (benchmarks); nothing when unset
    const double t1 = now_s();
    acc_ += t1 - t0_;
    timeline::span_between(name_, t0_, t1);
  }
  double& acc_;
  const char* name_;
  double t0_;
};

inline void scale(float* x, std::size_t n, int p) {
  if (p == 1) return;
  // Multiplying by the rounded 1/P would add a rounding of its own; divide as the engine does.
  detail::divide_in_place(x, n, DType::Float32, p);
}

// Bucket-aligned chunk boundaries: rank r owns elements [off[r], off[r+1]). Chunks cut at
// bucket multiples encode exactly as the whole would (docs/codecs.md), so no codec bucket
// straddles two owners.
inline std::vector<std::size_t> chunk_offsets(std::size_t n, std::size_t unit, int p) {
  const std::size_t units = (n + unit - 1) / unit;
  std::vector<std::size_t> off(static_cast<std::size_t>(p) + 1);
  for (int r = 0; r <= p; ++r)
    off[static_cast<std::size_t>(r)] =
        std::min(n, unit * (units * static_cast<std::size_t>(r) / static_cast<std::size_t>(p)));
  return off;
}

// Device executors: the non-finite check every rank agrees on in the same call. A kernel
// sets this rank's flag to P - rank when its input (+ residual) holds a NaN or Inf; one MAX
// allreduce of the flags at the end of the run tells every rank the lowest such rank. (Host
// runs carry the news inside their messages instead: run_error.hpp.)
class AgreedFlag {
 public:
  void init(exec::Executor& x) { flag_ = exec::Work<std::uint64_t>(x, 1); }
  bool active() const noexcept { return !flag_.empty(); }
  // Only quantizing codecs (q*, sign) need finite input; casts carry NaN/Inf through, as on
  // the host.
  void check(exec::Executor& x, const CodecSpec& codec, const float* in, const float* res,
             std::size_t n, int P, int me) {
    x.zero(flag_.data(), sizeof(std::uint64_t));
    if (codec.kind == CodecKind::Quantize || codec.kind == CodecKind::Sign)
      x.flag_non_finite(in, res, n, flag_.data(), static_cast<std::uint64_t>(P - me));
  }
  // Not payload: the 8 bytes are left out of sent_bytes, so wire_bytes compare with host runs.
  void post(Transport& t) {
    const std::uint64_t payload = t.sent_bytes;
    t.iallreduce(flag_.data(), 1, Elem::U64, Reduce::Max);
    t.sent_bytes = payload;
  }
  // Once the run's operations completed: the executor's own failures, then the agreed flag
  // (which wins, being the same on every rank).
  void settle(exec::Executor& x, int P, double timeout_s) {
    std::uint64_t v = 0;
    bool failed = false;
    Error local(ErrorCode::Internal, "");
    try {
      x.finish(timeout_s);
    } catch (const Error& e) {
      if (e.code() == ErrorCode::Timeout || e.code() == ErrorCode::Cuda) throw;
      failed = true;
      local = e;
    }
    x.to_host(&v, flag_.data(), sizeof v);
    if (v != 0) {
      RunError e;
      e.origin = P - static_cast<int>(v);
      e.raise();
    }
    if (failed) throw local;
  }

 private:
  exec::Work<std::uint64_t> flag_;
};

// The stage loop shared by the algorithms: report arrivals, and when every operation of the
// current stage has completed, run the next stage (which posts the following operations).
class Staged : public Algorithm {
 public:
  explicit Staged(Transport& t, exec::Executor& x = exec::host_executor())
      : t_(t), x_(x), done_(static_cast<std::size_t>(4 * t.size() + 8)) {}
  void begin(const void* in, void* out, std::uint64_t step) override {
    in_ = in;
    out_ = out;
    step_ = step;
    stage_ = 0;
    encode_s = decode_s = 0;
    marks_.start();
    // Device residuals: a non-finite element left by the previous run is reset here, on this
    // run's stream (host residuals are reset by the plan after each run).
    if (device_)
      for (const ResidualSlot& s : slots) x_.zero_non_finite(s.data, s.length);
    finished_ = !advance();
    marks_.posted(finished_, stage_, t_.sent_bytes);
  }
  bool progress() override {
    while (!finished_) {
      const int n = t_.test_some(done_.data());
      if (n == 0) return false;
      if (n > 0) {
        for (int i = 0; i < n; ++i) arrived(done_[static_cast<std::size_t>(i)]);
        continue;
      }
      marks_.completed(stage_, t_.sent_bytes);
      t_.reset();
      ++stage_;
      marks_.start();
      finished_ = !advance();
      marks_.posted(finished_, stage_, t_.sent_bytes);
    }
    return true;
  }

 protected:
  // Runs stage `stage_` (local work, then posts); false when the run is complete.
  virtual bool advance() = 0;
  virtual void arrived(int /*op*/) {}

  Transport& t_;
  exec::Executor& x_;
  bool device_ = x_.on_device();
  std::vector<int> done_;
  const void* in_ = nullptr;
  void* out_ = nullptr;
  std::uint64_t step_ = 0;
  int stage_ = 0;
  bool finished_ = true;
  timeline::StageMarks marks_;  // the timeline's stage and exchange spans
};

}  // namespace gradwire::coll
