#include "sgd.hpp"

#include <cmath>
#include <stdexcept>

namespace fm {

Sgd::Sgd(std::size_t n, double lr, double momentum, double weight_decay)
    : lr_(lr), momentum_(momentum), wd_(weight_decay), velocity_(n, 0.0f) {}

void Sgd::step(float* w, const float* g, double lr) {
  const float mu = static_cast<float>(momentum_), wd = static_cast<float>(wd_);
  const float a = static_cast<float>(lr);
  float* v = velocity_.data();
  const std::size_t n = velocity_.size();
  for (std::size_t i = 0; i < n; ++i) {
    v[i] = mu * v[i] + (g[i] + wd * w[i]);
    w[i] -= a * v[i];
  }
}

double scheduled_lr(const std::string& schedule, double lr, double progress) {
  if (schedule == "const") return lr;
  if (schedule == "cosine") return lr * 0.5 * (1.0 + std::cos(3.141592653589793 * progress));
  throw std::invalid_argument("--schedule: '" + schedule + "' is not const or cosine");
}

}  // namespace fm
