#include "mlp.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include <cblas.h>

namespace fm {
namespace {

// splitmix64: a counter-based generator, so initial weights depend on (seed, index) only.
std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
double unit(std::uint64_t bits) { return (static_cast<double>(bits >> 11) + 0.5) * 0x1.0p-53; }

int as_int(std::size_t v) { return static_cast<int>(v); }

}  // namespace

Mlp::Mlp(std::vector<std::size_t> dims, std::size_t max_batch)
    : dims_(std::move(dims)), max_batch_(max_batch) {
  if (dims_.size() < 2) throw std::invalid_argument("an MLP needs at least two layer sizes");
  std::size_t n = 0, widest = 0;
  for (std::size_t l = 0; l + 1 < dims_.size(); ++l) {
    offset_.push_back(n);
    n += dims_[l] * dims_[l + 1] + dims_[l + 1];
    act_.emplace_back(max_batch_ * dims_[l + 1]);
  }
  for (std::size_t d : dims_) widest = std::max(widest, d);
  params_.assign(n, 0.0f);
  grads_.assign(n, 0.0f);
  delta_.resize(max_batch_ * widest);
  delta_prev_.resize(max_batch_ * widest);
}

void Mlp::init(std::uint64_t seed) {
  std::uint64_t counter = mix(seed ^ 0x6d6c70696e6974ull);  // "mlpinit"
  for (std::size_t l = 0; l + 1 < dims_.size(); ++l) {
    const std::size_t nw = dims_[l] * dims_[l + 1];
    const double std = std::sqrt(2.0 / static_cast<double>(dims_[l]));
    float* w = weight(l);
    for (std::size_t i = 0; i < nw; ++i) {  // Box-Muller, one normal per pair of draws
      const double u1 = unit(mix(counter++)), u2 = unit(mix(counter++));
      w[i] = static_cast<float>(std * std::sqrt(-2.0 * std::log(u1)) *
                                std::cos(6.283185307179586 * u2));
    }
    std::fill(bias(l), bias(l) + dims_[l + 1], 0.0f);
  }
}

double Mlp::forward(const float* x, const std::uint8_t* labels, std::size_t rows,
                    std::size_t* correct) {
  if (rows > max_batch_) throw std::invalid_argument("forward: more rows than max_batch");
  const std::size_t layers = dims_.size() - 1;
  const float* in = x;
  for (std::size_t l = 0; l < layers; ++l) {
    const std::size_t k = dims_[l], m = dims_[l + 1];
    float* out = act_[l].data();
    const float* b = bias(l);
    for (std::size_t r = 0; r < rows; ++r) std::copy(b, b + m, out + r * m);
    // out (rows x m) += in (rows x k) . W (k x m)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, as_int(rows), as_int(m), as_int(k),
                1.0f, in, as_int(k), weight(l), as_int(m), 1.0f, out, as_int(m));
    if (l + 1 < layers) {
      for (std::size_t i = 0; i < rows * m; ++i) out[i] = std::max(out[i], 0.0f);
    }
    in = out;
  }
  // Softmax cross-entropy on the logits, in place: act_ at the end becomes probabilities.
  const std::size_t c = dims_.back();
  float* p = act_.back().data();
  double loss = 0;
  std::size_t hits = 0;
  for (std::size_t r = 0; r < rows; ++r) {
    float* z = p + r * c;
    const std::size_t best = static_cast<std::size_t>(std::max_element(z, z + c) - z);
    const float zmax = z[best];
    double sum = 0;
    for (std::size_t j = 0; j < c; ++j) sum += std::exp(static_cast<double>(z[j] - zmax));
    loss += std::log(sum) - static_cast<double>(z[labels[r]] - zmax);
    for (std::size_t j = 0; j < c; ++j) {
      z[j] = static_cast<float>(std::exp(static_cast<double>(z[j] - zmax)) / sum);
    }
    hits += best == labels[r] ? 1 : 0;
  }
  if (correct != nullptr) *correct = hits;
  return rows > 0 ? loss / static_cast<double>(rows) : 0.0;
}

void Mlp::backward(const float* x, const std::uint8_t* labels, std::size_t rows) {
  const std::size_t layers = dims_.size() - 1;
  const std::size_t c = dims_.back();
  const float inv = 1.0f / static_cast<float>(rows);
  // d(mean loss)/d(logits) = (softmax - onehot) / rows
  const float* p = act_.back().data();
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t j = 0; j < c; ++j) {
      delta_[r * c + j] = (p[r * c + j] - (j == labels[r] ? 1.0f : 0.0f)) * inv;
    }
  }
  for (std::size_t l = layers; l-- > 0;) {
    const std::size_t k = dims_[l], m = dims_[l + 1];
    const float* in = l == 0 ? x : act_[l - 1].data();
    float* gw = grads_.data() + offset_[l];
    float* gb = gw + k * m;
    // dW (k x m) = in^T (k x rows) . delta (rows x m)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, as_int(k), as_int(m), as_int(rows),
                1.0f, in, as_int(k), delta_.data(), as_int(m), 0.0f, gw, as_int(m));
    std::fill(gb, gb + m, 0.0f);
    for (std::size_t r = 0; r < rows; ++r) {
      for (std::size_t j = 0; j < m; ++j) gb[j] += delta_[r * m + j];
    }
    if (l == 0) break;
    // delta_prev (rows x k) = delta (rows x m) . W^T (m x k), masked by ReLU's derivative
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, as_int(rows), as_int(k), as_int(m),
                1.0f, delta_.data(), as_int(m), weight(l), as_int(m), 0.0f, delta_prev_.data(),
                as_int(k));
    const float* a = act_[l - 1].data();
    for (std::size_t i = 0; i < rows * k; ++i) {
      if (a[i] <= 0.0f) delta_prev_[i] = 0.0f;
    }
    delta_.swap(delta_prev_);
  }
}

}  // namespace fm
