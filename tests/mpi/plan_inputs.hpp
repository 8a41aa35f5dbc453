// Every rank's plan-test input, regenerated from (seed, rank, index) so that each rank can
// compute the exact result, and a mismatch counter that records the first offender.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "inputs.hpp"

namespace gwplan {

inline float input(std::uint64_t seed, int rank, std::size_t i) {
  return static_cast<float>(
      gwtest::value(gradwire::DType::Float32, gradwire::ReduceOp::Sum, seed, rank, i));
}

// Rank r's first n inputs (reduce-scatter: its whole send buffer, block j at j * count).
inline std::vector<float> inputs_of(std::uint64_t seed, int rank, std::size_t n) {
  std::vector<float> x(n);
  for (std::size_t i = 0; i < n; ++i) x[i] = input(seed, rank, i);
  return x;
}

// Counted, not asserted: a rank that left a test early would hang its peers.
struct Mismatch {
  std::size_t count = 0;
  std::string first;
  void check(std::size_t i, double got, double want, double bound) {
    if (std::fabs(got - want) <= bound) return;
    if (count++ == 0)
      first = "element " + std::to_string(i) + ": got " + std::to_string(got) + ", exact " +
              std::to_string(want) + ", bound " + std::to_string(bound);
  }
};

}  // namespace gwplan
