// A multilayer perceptron: affine layers with ReLU between them, softmax cross-entropy on
// the last. All parameters live in one contiguous buffer (per layer: W as in x out,
// row-major, then b), and so do their gradients, so one gradwire plan averages them all.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace fm {

class Mlp {
 public:
  // dims: input, hidden..., classes (e.g. {784, 512, 256, 10}). max_batch bounds the rows
  // of any forward/backward call (buffers are allocated once).
  Mlp(std::vector<std::size_t> dims, std::size_t max_batch);

  std::size_t param_count() const { return params_.size(); }
  float* params() { return params_.data(); }
  const float* params() const { return params_.data(); }
  float* grads() { return grads_.data(); }
  const std::vector<std::size_t>& dims() const { return dims_; }

  // He-normal weights (std 2/fan_in), zero biases, from a counter-based generator keyed by
  // seed: the same bits on every rank and every platform.
  void init(std::uint64_t seed);

  // x: rows x dims()[0]. Writes the mean cross-entropy of the rows into the return value
  // and, when correct != nullptr, the number of rows whose argmax matches the label.
  double forward(const float* x, const std::uint8_t* labels, std::size_t rows,
                 std::size_t* correct = nullptr);
  // After forward() on the same rows: grads() = d(mean loss)/d(params).
  void backward(const float* x, const std::uint8_t* labels, std::size_t rows);

 private:
  float* weight(std::size_t l) { return params_.data() + offset_[l]; }
  float* bias(std::size_t l) { return weight(l) + dims_[l] * dims_[l + 1]; }

  std::vector<std::size_t> dims_;
  std::size_t max_batch_;
  std::vector<std::size_t> offset_;      // start of layer l's W in params_ / grads_
  std::vector<float> params_, grads_;
  std::vector<std::vector<float>> act_;  // act_[l]: output of layer l (pre-softmax at the end)
  std::vector<float> delta_, delta_prev_;
};

}  // namespace fm
