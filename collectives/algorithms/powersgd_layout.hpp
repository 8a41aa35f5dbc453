// Where a powersgd plan's pieces live (collectives/algorithms/powersgd.hpp): which matrices of the
// buffer are factored and where their P, Q and residual sit, which elements travel dense,
// and the first Q. One definition for the host and the device path, so both send the same
// bytes and start from the same Q.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "gradwire/error.hpp"
#include "gradwire/plan.hpp"

namespace gradwire::coll {

struct PowerSgdMat {
  std::size_t off, n, m;  // first element in the buffer, rows, cols
  std::size_t p, q, e;    // offsets of its P (n x r), Q (m x r) and residual (n x m)
};

struct PowerSgdLayout {
  std::vector<PowerSgdMat> low;                              // factored matrices
  std::vector<std::pair<std::size_t, std::size_t>> dense;  // (offset, length), sent as they are
  std::size_t pn = 0, qn = 0, en = 0, dn = 0;  // floats of all P, all Q, residuals, dense values
};

// Throws Error(InvalidArgument) for a rank of 0 and shapes that are empty or do not fit in
// count. A matrix is factored only when r (rows + cols) < rows cols.
inline PowerSgdLayout powersgd_layout(std::size_t count, std::uint32_t rank,
                                      const std::vector<MatrixShape>& shapes) {
  auto bad = [](const std::string& what) {
    throw Error(ErrorCode::InvalidArgument, "gradwire: powersgd: " + what);
  };
  if (rank == 0) bad("powersgd_rank is 0; it must be >= 1");
  PowerSgdLayout l;
  std::size_t off = 0;
  for (std::size_t i = 0; i < shapes.size(); ++i) {
    const MatrixShape& s = shapes[i];
    if (s.rows == 0 || s.cols == 0)
      bad("shape " + std::to_string(i) + " is " + std::to_string(s.rows) + "x" +
          std::to_string(s.cols) + "; rows and cols must be >= 1");
    if (s.rows > (count - off) / s.cols)
      bad("shapes need more than count = " + std::to_string(count) + " elements (shape " +
          std::to_string(i) + ", " + std::to_string(s.rows) + "x" + std::to_string(s.cols) +
          ", starts at element " + std::to_string(off) + ")");
    const std::size_t size = s.rows * s.cols;
    if (rank * (s.rows + s.cols) < size) {
      l.low.push_back({off, s.rows, s.cols, l.pn, l.qn, l.en});
      l.pn += s.rows * rank;
      l.qn += s.cols * rank;
      l.en += size;
    } else {
      l.dense.push_back({off, size});
      l.dn += size;
    }
    off += size;
  }
  if (off < count) {
    l.dense.push_back({off, count - off});
    l.dn += count - off;
  }
  return l;
}

// Element i of the first Q: the same pseudo-random value in [-1, 1) on every rank.
inline float powersgd_initial_q(std::uint64_t seed, std::size_t i) {
  auto mix = [](std::uint64_t x) {  // splitmix64
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
  };
  const std::uint64_t z = mix(seed ^ mix(0x706f77657273ull + i));
  return static_cast<float>(static_cast<double>(z >> 40) * 0x1.0p-24 * 2.0 - 1.0);
}

}  // namespace gradwire::coll
