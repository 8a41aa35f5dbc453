// The median of a benchmark's samples (the mean of the middle two for an even count).
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

namespace gradwire::bench {

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

}  // namespace gradwire::bench
