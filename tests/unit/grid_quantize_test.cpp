// Shared-grid quantization (codec/grid.cpp) draws its random bits from the codec's vector
// Philox in runs of up to 256 elements; the codes must be those of the definition, one
// math::rounding_bits per element, at every kernel level, every bucket size and any offset.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "codec/grid.hpp"
#include "codec/isa.hpp"
#include "math/philox.hpp"
#include "math/quant.hpp"

namespace {

using gradwire::Rounding;
using gradwire::detail::KernelLevel;

// The definition: per element, its grid position rounded with its own 16 random bits.
std::vector<std::uint32_t> reference(const std::vector<float>& x, std::uint32_t bucket,
                                     const std::vector<float>& lo, const std::vector<float>& hi,
                                     std::uint32_t levels, Rounding round, std::uint64_t seed,
                                     std::uint64_t step, std::uint64_t off) {
  std::vector<std::uint32_t> q(x.size());
  const float lf = static_cast<float>(levels);
  for (std::size_t i = 0; i < x.size(); ++i) {
    const auto g = gradwire::math::grid_minmax(lo[i / bucket], hi[i / bucket], levels);
    const float t = gradwire::math::grid_position(x[i], g, lf);
    q[i] = round == Rounding::Stochastic
               ? gradwire::math::round_stochastic(
                     t, gradwire::math::rounding_bits(seed, step, off + i))
               : gradwire::math::round_nearest(t);
  }
  return q;
}

TEST(GridQuantize, SameCodesAsTheDefinitionPerElement) {
  std::mt19937 gen(7);
  std::uniform_real_distribution<float> d(-3.0f, 5.0f);
  const std::size_t n = 5003;
  std::vector<float> x(n);
  for (float& v : x) v = d(gen);
  for (KernelLevel level : {KernelLevel::Generic, KernelLevel::Avx2, KernelLevel::Avx512}) {
    gradwire::detail::limit_kernels(level);
    for (std::uint32_t bucket : {64u, 320u, 512u, 2048u}) {
      const std::size_t nb = gradwire::grid::bucket_count(n, bucket);
      std::vector<float> lo(nb), hi(nb);
      gradwire::grid::bucket_minmax(x.data(), n, bucket, lo.data(), hi.data());
      for (std::uint32_t levels : {1u, 3u, 15u, 255u, 1023u}) {
        for (Rounding round : {Rounding::Stochastic, Rounding::Nearest}) {
          for (std::uint64_t off : {0ull, 3ull, 4ull, 1000001ull}) {
            std::vector<std::uint32_t> q(n, 0xffffffffu);
            gradwire::grid::quantize(x.data(), n, bucket, lo.data(), hi.data(), levels, round, 99, 5,
                                     off, q.data());
            EXPECT_EQ(q, reference(x, bucket, lo, hi, levels, round, 99, 5, off))
                << "level " << static_cast<int>(level) << " bucket " << bucket << " levels " << levels
                << " offset " << off;
          }
        }
      }
    }
  }
  gradwire::detail::limit_kernels(KernelLevel::Avx512);  // no cap
}

}  // namespace
