// Deep Gradient Compression state a plan keeps (Lin et al., ICLR 2018): local gradient
// clipping, momentum correction (the plan holds the velocity u and the codec's error-feedback
// residual accumulates u, not the gradient), momentum factor masking (u is zeroed where this
// rank's message carried the element) and a warm-up schedule of top-k density.
// docs/compressed-collectives.md, "DGC options".
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "gradwire/codec.hpp"

namespace gradwire::coll {

struct DgcOptions {
  float momentum = 0.0f;          // > 0: u = momentum * u + g is what the codec encodes
  bool masking = true;            // zero u where the message carried the element (sparse codecs)
  float clip_norm = 0.0f;         // > 0: g scaled so that ||g||_2 <= clip_norm, before u
  std::uint64_t warmup_steps = 0; // top-k: density falls from warmup_density to the codec's
  double warmup_density = 0.25;
  bool any() const { return momentum != 0.0f || clip_norm != 0.0f || warmup_steps > 0; }
};

// The top-k density of step `step`: start * (final / start)^(step / steps) while
// step < steps (exponential, as DGC's 25 % -> 6.25 % -> ... -> 0.1 % by epochs), then final.
// Never below final.
double warmup_density(double start, double final_density, std::uint64_t steps,
                      std::uint64_t step);

class Dgc {
 public:
  // count: elements of the (float32) buffer; codec: the plan's codec.
  Dgc(const DgcOptions& options, const CodecSpec& codec, std::size_t count);

  // Clips g and folds it into the velocity; returns what the codec should encode (g itself,
  // clipped into this object's buffer, when momentum is off).
  const float* prepare(const float* g);
  // The codec of step `step` (top-k with the warm-up density; the plan's codec otherwise).
  CodecSpec spec_at(std::uint64_t step) const;
  // The top-k spec with the largest k any step uses (sizes the message buffers).
  CodecSpec widest_spec() const;
  // Momentum factor masking: u[i] = 0 wherever carried[i] != 0 (a decode of this rank's own
  // message), or everywhere (the message was replaced by the dense vector).
  void mask(const float* carried);
  void mask_all();
  void reset();

  const DgcOptions& options() const { return o_; }
  float* scratch() { return scratch_.data(); }  // count floats for the caller's decode
  const std::vector<float>& velocity() const { return u_; }
  // A checkpoint's velocity (velocity()'s size; a load checks it).
  void set_velocity(const std::vector<float>& u) { u_ = u; }

 private:
  DgcOptions o_;
  CodecSpec spec_;
  std::size_t count_;
  double final_density_ = 0;
  std::vector<float> u_, clipped_, scratch_;
};

}  // namespace gradwire::coll
