#include "collectives/dgc.hpp"

#include <algorithm>
#include <cmath>

#include "gradwire/error.hpp"

namespace gradwire::coll {

double warmup_density(double start, double final_density, std::uint64_t steps,
                      std::uint64_t step) {
  if (step >= steps || start <= final_density) return final_density;
  const double t = static_cast<double>(step) / static_cast<double>(steps);
  return std::max(final_density, start * std::pow(final_density / start, t));
}

Dgc::Dgc(const DgcOptions& o, const CodecSpec& codec, std::size_t count)
    : o_(o), spec_(codec), count_(count) {
  auto bad = [](const std::string& what) {
    throw Error(ErrorCode::InvalidArgument, "gradwire: plan: " + what);
  };
  if (!(o.momentum >= 0.0f && o.momentum < 1.0f))
    bad("momentum " + std::to_string(o.momentum) + " is not in [0, 1)");
  if (!(o.clip_norm >= 0.0f) || !std::isfinite(o.clip_norm))
    bad("clip_norm " + std::to_string(o.clip_norm) + " is not a finite number >= 0");
  if (o.warmup_steps > 0) {
    if (codec.kind != CodecKind::TopK)
      bad("warmup_steps (a top-k density schedule) needs a top-k codec, not '" +
          codec.to_string() + "'");
    if (!(o.warmup_density > 0.0 && o.warmup_density <= 1.0))
      bad("warmup_density " + std::to_string(o.warmup_density) + " is not in (0, 1]");
  }
  if (codec.kind == CodecKind::TopK) {
    final_density_ = codec.k ? static_cast<double>(codec.k) / static_cast<double>(count ? count : 1)
                             : codec.ratio;
  }
  if (o.momentum > 0.0f) u_.assign(count, 0.0f);
  if (o.clip_norm > 0.0f && o.momentum == 0.0f) clipped_.resize(count);
  if (o.masking && o.momentum > 0.0f && codec.sparse()) scratch_.resize(count);
}

const float* Dgc::prepare(const float* g) {
  float c = 1.0f;
  if (o_.clip_norm > 0.0f) {
    double s = 0;  // float64 and a fixed order: every rank's factor is reproducible
    for (std::size_t i = 0; i < count_; ++i) s += static_cast<double>(g[i]) * g[i];
    const double norm = std::sqrt(s);
    if (norm > o_.clip_norm) c = static_cast<float>(o_.clip_norm / norm);
  }
  if (o_.momentum > 0.0f) {
    const float m = o_.momentum;
    for (std::size_t i = 0; i < count_; ++i) u_[i] = m * u_[i] + c * g[i];
    return u_.data();
  }
  if (c == 1.0f) return g;
  for (std::size_t i = 0; i < count_; ++i) clipped_[i] = c * g[i];
  return clipped_.data();
}

CodecSpec Dgc::spec_at(std::uint64_t step) const {
  if (o_.warmup_steps == 0 || step >= o_.warmup_steps) return spec_;
  CodecSpec s = spec_;
  s.k = 0;
  s.ratio = std::min(1.0, warmup_density(o_.warmup_density, final_density_, o_.warmup_steps, step));
  return s;
}

CodecSpec Dgc::widest_spec() const {
  if (o_.warmup_steps == 0 || o_.warmup_density <= final_density_) return spec_;
  CodecSpec s = spec_;
  s.k = 0;
  s.ratio = std::min(1.0, o_.warmup_density);
  return s;
}

void Dgc::mask(const float* carried) {
  if (!o_.masking || u_.empty()) return;
  for (std::size_t i = 0; i < count_; ++i)
    if (carried[i] != 0.0f) u_[i] = 0.0f;
}

void Dgc::mask_all() {
  if (o_.masking) std::fill(u_.begin(), u_.end(), 0.0f);
}

void Dgc::reset() { std::fill(u_.begin(), u_.end(), 0.0f); }

}  // namespace gradwire::coll
