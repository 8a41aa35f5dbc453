// Shared-grid quantization (grid::quantize, stochastic rounding) against its definition, one
// scalar Philox call per element (what grid::quantize did before it used the codec's vector
// generator), in the same process: the before/after ratio of issue 13 from one run.
//
//   gw_grid_bench --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "codec/grid.hpp"
#include "math/philox.hpp"
#include "math/quant.hpp"

namespace {

struct Input {
  std::vector<float> x, lo, hi;
  std::vector<std::uint32_t> q;
  static constexpr std::uint32_t kBucket = 512, kLevels = 15;  // q4, default bucket
  explicit Input(std::size_t n) : x(n), q(n) {
    std::mt19937 g(3);
    std::uniform_real_distribution<float> d(-4.0f, 4.0f);
    for (float& v : x) v = d(g);
    const std::size_t nb = gradwire::grid::bucket_count(n, kBucket);
    lo.resize(nb);
    hi.resize(nb);
    gradwire::grid::bucket_minmax(x.data(), n, kBucket, lo.data(), hi.data());
  }
};

void BM_GridQuantize(benchmark::State& st) {
  Input in(static_cast<std::size_t>(st.range(0)));
  std::uint64_t step = 0;
  for (auto _ : st) {
    gradwire::grid::quantize(in.x.data(), in.x.size(), Input::kBucket, in.lo.data(), in.hi.data(),
                             Input::kLevels, gradwire::Rounding::Stochastic, 1, step++, 0, in.q.data());
    benchmark::DoNotOptimize(in.q.data());
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * st.range(0) * 4);
}

// The definition, element by element (the bits grid::quantize must match).
void BM_GridQuantizeScalarPhilox(benchmark::State& st) {
  Input in(static_cast<std::size_t>(st.range(0)));
  const float lf = static_cast<float>(Input::kLevels);
  std::uint64_t step = 0;
  for (auto _ : st) {
    for (std::size_t i = 0; i < in.x.size(); ++i) {
      const std::size_t b = i / Input::kBucket;
      const auto g = gradwire::math::grid_minmax(in.lo[b], in.hi[b], Input::kLevels);
      in.q[i] = gradwire::math::round_stochastic(
          gradwire::math::grid_position(in.x[i], g, lf),
          gradwire::math::rounding_bits(1, step, i));
    }
    ++step;
    benchmark::DoNotOptimize(in.q.data());
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * st.range(0) * 4);
}

BENCHMARK(BM_GridQuantize)->Arg(1 << 18)->Arg(1 << 22)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_GridQuantizeScalarPhilox)->Arg(1 << 18)->Arg(1 << 22)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
