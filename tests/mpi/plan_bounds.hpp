// The documented error bounds of the compressed algorithms (docs/compressed-collectives.md),
// computed from every rank's input, which each rank regenerates from (seed, rank, index).
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <gradwire/codec.hpp>

#include "codec/grid.hpp"

namespace gwplan {

using Vec = std::vector<double>;
constexpr double kU = 0x1.0p-24;  // float32 unit roundoff

// Bound of one rounding by `codec` of a contributor whose values are v, each known only up to
// +-delta[i] (0 for exact float inputs): ranges widen by the bucket's largest delta.
inline Vec rounding_bound(const gradwire::Codec& codec, const Vec& v, const Vec& delta) {
  using gradwire::CodecKind;
  const std::size_t n = v.size();
  Vec e(n, 0.0);
  const auto& s = codec.spec();
  switch (s.kind) {
    case CodecKind::None: break;
    case CodecKind::Fp16:
      for (std::size_t i = 0; i < n; ++i) e[i] = std::max(0x1.0p-11 * (std::fabs(v[i]) + delta[i]), 0x1.0p-25);
      break;
    case CodecKind::Bf16:
      for (std::size_t i = 0; i < n; ++i) e[i] = std::max(0x1.0p-8 * (std::fabs(v[i]) + delta[i]), 0x1.0p-133);
      break;
    case CodecKind::Quantize:
    case CodecKind::Sign: {
      const std::size_t B = s.bucket;
      for (std::size_t b0 = 0; b0 < n; b0 += B) {
        const std::size_t b1 = std::min(n, b0 + B);
        double lo = INFINITY, hi = -INFINITY, amax = 0, d = 0;
        for (std::size_t i = b0; i < b1; ++i) {
          lo = std::min(lo, v[i]);
          hi = std::max(hi, v[i]);
          amax = std::max(amax, std::fabs(v[i]));
          d = std::max(d, delta[i]);
        }
        double bound;
        if (s.kind == CodecKind::Sign) {
          bound = (amax + d) * (1 + 0x1.0p-20);  // ||x| - s| <= max |x| of the bucket
        } else if (s.scale == gradwire::ScaleMode::AbsMax) {
          const float m = static_cast<float>((amax + d) * (1 + kU));
          bound = codec.bucket_error_bound(-m, m);
        } else {
          bound = codec.bucket_error_bound(static_cast<float>((lo - d) - kU * std::fabs(lo - d)),
                                           static_cast<float>((hi + d) + kU * std::fabs(hi + d)));
          if (d == 0) bound = codec.bucket_error_bound(static_cast<float>(lo), static_cast<float>(hi));
        }
        for (std::size_t i = b0; i < b1; ++i) e[i] = bound;
      }
      break;
    }
    default:  // sparse: an element may be dropped
      for (std::size_t i = 0; i < n; ++i) e[i] = std::fabs(v[i]) + delta[i];
      break;
  }
  return e;
}

// Largest delta per bucket of B elements (B = 1: per element).
inline Vec bucket_max(const Vec& d, std::size_t B) {
  Vec out(d.size());
  for (std::size_t b0 = 0; b0 < d.size(); b0 += B) {
    const std::size_t b1 = std::min(d.size(), b0 + B);
    const double m = *std::max_element(d.begin() + static_cast<long>(b0), d.begin() + static_cast<long>(b1));
    for (std::size_t i = b0; i < b1; ++i) out[i] = m;
  }
  return out;
}

// Scatter-reduce-allgather over contributors c (each known up to +-delta): every contributor
// rounded once (E1), summed in float32 (F), optionally divided by `divide` before the owner
// re-encodes the reduced chunk (E2).
inline Vec sra_bound(const gradwire::Codec& codec, const std::vector<Vec>& c,
                     const std::vector<Vec>& delta, int divide) {
  const std::size_t n = c.empty() ? 0 : c[0].size();
  const double P = static_cast<double>(c.size());
  Vec S(n, 0), A(n, 0), E1(n, 0), D(n, 0);
  for (std::size_t k = 0; k < c.size(); ++k) {
    const Vec e = rounding_bound(codec, c[k], delta[k]);
    for (std::size_t i = 0; i < n; ++i) {
      S[i] += c[k][i];
      A[i] += std::fabs(c[k][i]) + delta[k][i];
      E1[i] += e[i];
      D[i] += delta[k][i];
    }
  }
  Vec M(n), T(n);
  for (std::size_t i = 0; i < n; ++i) {
    M[i] = D[i] + E1[i] + (P - 1) * kU * (A[i] + E1[i]);
    T[i] = S[i];
    if (divide > 1) {
      M[i] = M[i] / divide + kU * (std::fabs(S[i]) + M[i]) / divide;
      T[i] = S[i] / divide;
    }
  }
  const std::size_t B = codec.bucket_size() ? codec.bucket_size() : 1;
  const Vec E2 = rounding_bound(codec, T, bucket_max(M, B));
  Vec out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = M[i] + E2[i];
  return out;
}

// Shared grid: one agreed grid per bucket, each contributor rounded once onto it.
inline Vec shared_grid_bound(const gradwire::Codec& codec, const std::vector<Vec>& c) {
  const auto& s = codec.spec();
  const std::size_t n = c.empty() ? 0 : c[0].size();
  const double P = static_cast<double>(c.size());
  const std::uint32_t L = (1u << s.bits) - 1;
  Vec out(n);
  for (std::size_t b0 = 0; b0 < n; b0 += s.bucket) {
    const std::size_t b1 = std::min<std::size_t>(n, b0 + s.bucket);
    double lo = INFINITY, hi = -INFINITY;
    for (const Vec& v : c)
      for (std::size_t i = b0; i < b1; ++i) {
        lo = std::min(lo, v[i]);
        hi = std::max(hi, v[i]);
      }
    if (s.scale == gradwire::ScaleMode::AbsMax) {
      const double m = std::max(std::fabs(lo), std::fabs(hi));
      lo = -m;
      hi = m;
    }
    const double e = gradwire::grid::error_bound(static_cast<float>(lo), static_cast<float>(hi), L, s.round);
    for (std::size_t i = b0; i < b1; ++i) out[i] = P * e + 0x1.0p-22 * P * (std::fabs(lo) + std::fabs(hi));
  }
  return out;
}

// Sparse allgather: each contributor's own codec bound (what it dropped), summed in float32.
inline Vec sparse_bound(const gradwire::Codec& codec, const std::vector<std::vector<float>>& c) {
  const std::size_t n = c.empty() ? 0 : c[0].size();
  const double P = static_cast<double>(c.size());
  Vec out(n, 0), A(n, 0);
  for (const auto& v : c) {
    const std::vector<float> e = codec.error_bounds(v.data(), v.size());
    for (std::size_t i = 0; i < n; ++i) {
      out[i] += e[i];
      A[i] += std::fabs(v[i]);
    }
  }
  for (std::size_t i = 0; i < n; ++i) out[i] += (P - 1) * kU * A[i];
  return out;
}

// A sum known within B, divided by P in float32.
inline double avg_of(double B, double S, int P) { return B / P + kU * (std::fabs(S) + B) / P; }

}  // namespace gwplan
