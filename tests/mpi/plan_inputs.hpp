// Every rank's plan-test input, regenerated from (seed, rank, index) so that each rank can
// compute the exact result, a mismatch counter that records the first offender, the check
// that every rank holds the same bits, and the PowerSGD tests' low-rank gradient (host and
// device plans are held to the same one).
#pragma once

#include <mpi.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <gradwire/plan.hpp>

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

// True on every rank when every rank's buffer holds the same bytes (an FNV-1a hash; the
// maximum of it and of its complement agree only if every rank's is the same).
inline bool identical_everywhere(const void* p, std::size_t bytes) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (std::size_t i = 0; i < bytes; ++i) h = (h ^ static_cast<const unsigned char*>(p)[i]) * 0x100000001b3ull;
  std::uint64_t mm[2] = {h, ~h};
  MPI_Allreduce(MPI_IN_PLACE, mm, 2, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
  return mm[0] == ~mm[1];
}

// Uniform in [-1, 1) from (seed, rank, index).
inline double signed_unit(std::uint64_t seed, int rank, std::size_t i) {
  return gwtest::unit(seed, rank, i) * 2.0 - 1.0;
}

// The PowerSGD tests' buffer: a 40x30 matrix, a 1x30 row (dense: too small to factor) and 7
// trailing elements.
inline const std::vector<gradwire::MatrixShape> kPowerSgdShapes = {{40, 30}, {1, 30}};
constexpr std::size_t kPowerSgdCount = 40 * 30 + 30 + 7;

// Rank `me`'s gradient in g: the matrix A B_me^T with A (40x2) common to all ranks, so the
// average over the P ranks has rank 2; the dense parts are arbitrary. Returns the exact
// average in float64.
inline std::vector<double> rank2_gradient(int me, int P, std::vector<float>& g) {
  g.assign(kPowerSgdCount, 0.0f);
  std::vector<double> avg(kPowerSgdCount, 0.0);
  for (int q = 0; q < P; ++q) {
    for (std::size_t i = 0; i < 40; ++i)
      for (std::size_t j = 0; j < 30; ++j) {
        double s = 0;
        for (std::size_t k = 0; k < 2; ++k) s += signed_unit(1, 0, i * 2 + k) * signed_unit(2, q, j * 2 + k);
        const float x = static_cast<float>(s);
        if (q == me) g[i * 30 + j] = x;
        avg[i * 30 + j] += static_cast<double>(x) / P;
      }
    for (std::size_t i = 40 * 30; i < kPowerSgdCount; ++i) {
      const float x = static_cast<float>(signed_unit(3, q, i));
      if (q == me) g[i] = x;
      avg[i] += static_cast<double>(x) / P;
    }
  }
  return avg;
}

}  // namespace gwplan
