// Errors every rank learns together. A rank that cannot encode its input (a non-finite value
// for a quantizing codec) or decode a peer's message still sends, in the slot of the message it
// was going to send, a small error record instead; ranks that receive one pass it on in their
// next message. Every rank receives from every other by the end of a run (SRA's allgather
// stage, the size exchange of the allgather-based algorithms, shared-grid's range reduction),
// so every rank ends the same call with the same error: no extra round trip on the fast path
// and no wait for the timeout. Ranks reporting at once: the lowest rank's error wins.
#pragma once

#include <cstddef>
#include <cstdint>

#include "gradwire/error.hpp"

namespace gradwire::coll {

struct RunError {
  enum What : std::uint32_t { NonFinite = 0, Malformed = 1 };
  int origin = -1;             // the rank that found it; -1: none
  What what = NonFinite;
  std::uint64_t value = 0;     // NonFinite: global element index + 1 (0: unknown);
                               // Malformed: the rank whose message it was
  bool set() const noexcept { return origin >= 0; }
  // Keeps the error of the lowest origin rank, so every rank settles on the same one.
  void merge(const RunError& o) noexcept {
    if (o.set() && (!set() || o.origin < origin)) *this = o;
  }
  // Throws the agreed error: the same code and text on every rank.
  [[noreturn]] void raise() const;
};

// Record size; every codec message has room for it (its header alone is 56 bytes).
constexpr std::size_t kRunErrorBytes = 24;
void write_run_error(const RunError& e, std::byte* out);
// True (and *e filled) when `in` holds an error record rather than a codec message.
bool read_run_error(const std::byte* in, std::size_t bytes, RunError* e);

// The first element i (global index goff + i) where x[i] (+ res[i] when res) is not finite.
RunError non_finite_at(int rank, const float* x, const float* res, std::size_t n,
                       std::uint64_t goff);

}  // namespace gradwire::coll
