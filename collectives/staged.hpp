// Pieces the compressed algorithms share (collectives/algorithms.cpp and the algorithms in
// their own files): codec timing, the avg division, bucket-aligned chunking and the stage loop.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "collectives/algorithms.hpp"
#include "collectives/slowdown.hpp"
#include "transport/element_ops.hpp"

namespace gradwire::coll {

inline double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Adds the time of a scope to a counter (encode_s / decode_s).
struct Timed {
  explicit Timed(double& acc) : acc_(acc), t0_(now_s()) {}
  ~Timed() {
    slow_down(now_s() - t0_);  // GRADWIRE_SLOW_RANK (benchmarks); nothing when unset
    acc_ += now_s() - t0_;
  }
  double& acc_;
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

// The stage loop shared by the algorithms: report arrivals, and when every operation of the
// current stage has completed, run the next stage (which posts the following operations).
class Staged : public Algorithm {
 public:
  explicit Staged(Transport& t) : t_(t), done_(static_cast<std::size_t>(4 * t.size() + 8)) {}
  void begin(const void* in, void* out, std::uint64_t step) override {
    in_ = in;
    out_ = out;
    step_ = step;
    stage_ = 0;
    encode_s = decode_s = 0;
    finished_ = !advance();
  }
  bool progress() override {
    while (!finished_) {
      const int n = t_.test_some(done_.data());
      if (n == 0) return false;
      if (n > 0) {
        for (int i = 0; i < n; ++i) arrived(done_[static_cast<std::size_t>(i)]);
        continue;
      }
      t_.reset();
      ++stage_;
      finished_ = !advance();
    }
    return true;
  }

 protected:
  // Runs stage `stage_` (local work, then posts); false when the run is complete.
  virtual bool advance() = 0;
  virtual void arrived(int /*op*/) {}

  Transport& t_;
  std::vector<int> done_;
  const void* in_ = nullptr;
  void* out_ = nullptr;
  std::uint64_t step_ = 0;
  int stage_ = 0;
  bool finished_ = true;
};

}  // namespace gradwire::coll
