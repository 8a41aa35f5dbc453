// Codec throughput: encode and decode of float32 gradients, 1 MB to 256 MB of input, as
// input bytes per second and as vs_memcpy, the ratio to memcpy of the same bytes measured in
// the same run (same machine state, same sizes). One thread.
//
// vs_memcpy compares wall-clock times; vs_memcpy_cpu compares this thread's CPU time, which
// on a machine shared with other jobs is far less noisy (it still sees their cache and
// memory-bandwidth pressure, not the time slices they take). srbits/N: the stochastic-rounding
// random bits alone for N bytes of float32 (what the SR encoders spend on Philox).
//
//   gw_codec_bench                                   # full sweep (bench/results/codec-cpu.md)
//   gw_codec_bench --benchmark_filter='/(q8|fp16)/1048576$' --benchmark_min_time=0.05  # smoke
#include <benchmark/benchmark.h>

#include <chrono>
#include <ctime>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "codec/rounding_words.hpp"
#include "gradwire/codec.hpp"

namespace {

using Clock = std::chrono::steady_clock;

double thread_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// Wall and CPU seconds of one timed region.
struct Times {
  double wall, cpu;
};

struct Stopwatch {
  Clock::time_point t0 = Clock::now();
  double c0 = thread_cpu_seconds();
  Times elapsed() const {
    return {std::chrono::duration<double>(Clock::now() - t0).count(), thread_cpu_seconds() - c0};
  }
};

std::vector<float> gradient(std::size_t n) {
  std::mt19937 g(12345);
  std::normal_distribution<float> d(0.0f, 1e-3f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

// Wall and CPU seconds per memcpy of `bytes`, each the best of a few runs after a warm-up,
// cached per size.
Times memcpy_seconds(std::size_t bytes) {
  static std::map<std::size_t, Times> cache;
  if (auto it = cache.find(bytes); it != cache.end()) return it->second;
  std::vector<char> a(bytes, 1), b(bytes, 2);
  std::memcpy(b.data(), a.data(), bytes);
  Times best{1e30, 1e30};
  const int reps = bytes >= (64u << 20) ? 5 : 20;
  for (int r = 0; r < reps; ++r) {
    a[static_cast<std::size_t>(r) % bytes] = static_cast<char>(r);
    const Stopwatch sw;
    std::memcpy(b.data(), a.data(), bytes);
    benchmark::ClobberMemory();
    const Times t = sw.elapsed();
    best.wall = std::min(best.wall, t.wall);
    best.cpu = std::min(best.cpu, t.cpu);
  }
  benchmark::DoNotOptimize(b.data());
  cache[bytes] = best;
  return best;
}

void report(benchmark::State& state, std::size_t in_bytes, Times t) {
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                          static_cast<std::int64_t>(in_bytes));
  const double iters = static_cast<double>(state.iterations());
  const Times ref = memcpy_seconds(in_bytes);
  state.counters["vs_memcpy"] = ref.wall / (t.wall / iters);
  state.counters["vs_memcpy_cpu"] = ref.cpu / (t.cpu / iters);
}

void bm_encode(benchmark::State& state, const std::string& spec) {
  const gradwire::Codec c = gradwire::make_codec(spec);
  const std::size_t bytes = static_cast<std::size_t>(state.range(0));
  const std::size_t n = bytes / 4;
  const std::vector<float> x = gradient(n);
  std::vector<std::byte> out(c.max_encoded_bytes(n));
  std::size_t msg = 0;
  std::uint64_t step = 0;
  msg = c.encode(x.data(), gradwire::DType::Float32, n, 0, 7, step, out.data(), out.size());
  const Stopwatch sw;
  for (auto _ : state) {
    msg = c.encode(x.data(), gradwire::DType::Float32, n, 0, 7, ++step, out.data(), out.size());
    benchmark::DoNotOptimize(out.data());
  }
  report(state, bytes, sw.elapsed());
  state.counters["ratio"] = static_cast<double>(bytes) / static_cast<double>(msg);
}

void bm_decode(benchmark::State& state, const std::string& spec) {
  const gradwire::Codec c = gradwire::make_codec(spec);
  const std::size_t bytes = static_cast<std::size_t>(state.range(0));
  const std::size_t n = bytes / 4;
  std::vector<std::byte> msg;
  {
    const std::vector<float> x = gradient(n);
    msg.resize(c.max_encoded_bytes(n));
    msg.resize(c.encode(x.data(), gradwire::DType::Float32, n, 0, 7, 1, msg.data(), msg.size()));
  }
  std::vector<float> y(n);
  c.decode(msg.data(), msg.size(), y.data(), gradwire::DType::Float32, n);
  const Stopwatch sw;
  for (auto _ : state) {
    c.decode(msg.data(), msg.size(), y.data(), gradwire::DType::Float32, n);
    benchmark::DoNotOptimize(y.data());
  }
  report(state, bytes, sw.elapsed());
}

// Stochastic rounding's random bits alone (16 per element, codec/rounding_words.hpp) for the
// elements of `bytes` of float32 input, in the codec's chunks of 256: how much of an SR
// encoder's time the generator takes (compare encode/q8 and encode/q8:round=nearest).
void bm_rounding_bits(benchmark::State& state) {
  const std::size_t n = static_cast<std::size_t>(state.range(0)) / 4;
  alignas(64) std::uint16_t r[gradwire::detail::kRoundingBits];
  std::uint64_t step = 0;
  std::uint32_t sink = 0;
  const Stopwatch sw;
  for (auto _ : state) {
    ++step;
    for (std::size_t g = 0; g < n; g += gradwire::detail::kRoundingChunk) {
      gradwire::detail::rounding_bits(7, step, g, gradwire::detail::kRoundingChunk, r);
      sink += r[g & 255u];
    }
    benchmark::DoNotOptimize(sink);
  }
  report(state, static_cast<std::size_t>(state.range(0)), sw.elapsed());
}

void bm_memcpy(benchmark::State& state) {
  const std::size_t bytes = static_cast<std::size_t>(state.range(0));
  std::vector<char> a(bytes, 1), b(bytes, 2);
  const Stopwatch sw;
  for (auto _ : state) {
    std::memcpy(b.data(), a.data(), bytes);
    benchmark::ClobberMemory();
  }
  report(state, bytes, sw.elapsed());
}

const char* const kSpecs[] = {
    "none", "fp16", "bf16", "q8", "q4", "q2", "q1", "q8:round=nearest", "q4:round=nearest",
    "sign", "topk:0.01", "topk:0.01,index=delta,value=f16", "randk:0.01", "threshold:3e-3"};

int register_all() {
  const auto sizes = [](benchmark::internal::Benchmark* b) {
    b->RangeMultiplier(4)->Range(1 << 20, 256 << 20)->UseRealTime()->Unit(benchmark::kMillisecond);
  };
  sizes(benchmark::RegisterBenchmark("memcpy", bm_memcpy));
  sizes(benchmark::RegisterBenchmark("srbits", bm_rounding_bits));
  for (const char* s : kSpecs) {
    sizes(benchmark::RegisterBenchmark((std::string("encode/") + s).c_str(), bm_encode, std::string(s)));
    sizes(benchmark::RegisterBenchmark((std::string("decode/") + s).c_str(), bm_decode, std::string(s)));
  }
  return 0;
}
const int registered = register_all();

}  // namespace

BENCHMARK_MAIN();
