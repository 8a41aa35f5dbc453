// SGD with (heavy-ball) momentum and optional L2 weight decay:
//   v = momentum * v + (g + wd * w);  w -= lr * v
// The learning rate follows a schedule over the run (constant, or cosine to zero).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace fm {

class Sgd {
 public:
  Sgd(std::size_t n, double lr, double momentum, double weight_decay);
  void step(float* w, const float* g, double lr);
  double base_lr() const { return lr_; }
  float* velocity() { return velocity_.data(); }  // n floats: the momentum state

 private:
  double lr_, momentum_, wd_;
  std::vector<float> velocity_;
};

// The learning rate at `progress` in [0, 1) of the run: "const" or "cosine"
// (lr * (1 + cos(pi * progress)) / 2). Throws std::invalid_argument on another name.
double scheduled_lr(const std::string& schedule, double lr, double progress);

}  // namespace fm
