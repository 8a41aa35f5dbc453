// GPU codec throughput, beside gw_codec_bench (same benchmark names, plus encode_ef and
// decode_add): each kernel timed with CUDA events, and reported against the memory roofline
// measured in the same run.
//
//   bytes_moved  the bytes the kernel must read and write at the least (as issue 11 defines them):
//                encode: input + message; encode_ef: + residual read and written;
//                decode: message + output; decode_add: message + accumulator read and written
//                (sparse decode_add: message + the nnz touched accumulator entries, twice)
//   GBps         bytes_moved / time
//   roofline     GBps / the bandwidth of a device-to-device copy of the input (read + write),
//                measured in this process (the "copy" benchmark)
//   vs_copy      copy time of the float32 input / kernel time (the ratio)
//   ratio        input bytes / message bytes
//   graph        1: the calls were timed as a captured CUDA graph (kernel time, not launch rate)
//
//   gw_codec_bench_gpu                                    # all, 1M and 64M elements (about a minute)
//   gw_codec_bench_gpu --benchmark_filter='/(q8|fp16)/'   # some
// Without a usable GPU it prints why and exits 0.
#include <benchmark/benchmark.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "codec_cuda.hpp"
#include "gradwire/codec.hpp"

namespace {

void ck(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

struct DevBuf {
  void* p = nullptr;
  explicit DevBuf(std::size_t n) { ck(cudaMalloc(&p, n + 16), "cudaMalloc"); }
  ~DevBuf() { cudaFree(p); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  template <class T>
  T* as() const {
    return static_cast<T*>(p);
  }
};

// The float32 gradient of n elements (sd 1e-3, as gw_codec_bench), on the device, cached.
const float* gradient(std::size_t n) {
  static std::map<std::size_t, std::unique_ptr<DevBuf>> cache;
  auto& slot = cache[n];
  if (!slot) {
    std::mt19937 g(12345);
    std::normal_distribution<float> d(0.0f, 1e-3f);
    std::vector<float> v(n);
    for (auto& x : v) x = d(g);
    slot = std::make_unique<DevBuf>(4 * n);
    ck(cudaMemcpy(slot->p, v.data(), 4 * n, cudaMemcpyHostToDevice), "cudaMemcpy");
  }
  return slot->as<float>();
}

int reps_for(std::size_t bytes) { return bytes >= (64u << 20) ? 5 : 50; }

// The stream every benchmark enqueues on (a created one: the legacy stream cannot be captured).
cudaStream_t bench_stream() {
  static cudaStream_t s = [] {
    cudaStream_t t = nullptr;
    ck(cudaStreamCreateWithFlags(&t, cudaStreamNonBlocking), "cudaStreamCreate");
    return t;
  }();
  return s;
}

// Seconds per call of f, the median of 10 samples of `reps` calls between two events. The
// reps calls are captured once into a CUDA graph and the graph is what is timed, so that at
// small sizes the figure is the kernels' time, not the host's launch rate; where capture
// fails, the calls are launched directly (*graphed = false).
template <class F>
double timed(F&& f, int reps, bool* graphed = nullptr) {
  const cudaStream_t s = bench_stream();
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  bool use_graph = cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaSuccess;
  if (use_graph) {
    try {
      for (int r = 0; r < reps; ++r) f();
    } catch (...) {
      use_graph = false;
    }
    use_graph = cudaStreamEndCapture(s, &graph) == cudaSuccess && use_graph &&
                cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess;
    if (!use_graph) {
      cudaGetLastError();
      if (exec) cudaGraphExecDestroy(exec);
      exec = nullptr;
    }
  }
  if (graphed) *graphed = use_graph;
  const auto run = [&] {
    if (use_graph) {
      ck(cudaGraphLaunch(exec, s), "cudaGraphLaunch");
    } else {
      for (int r = 0; r < reps; ++r) f();
    }
  };
  cudaEvent_t a, b;
  ck(cudaEventCreate(&a), "cudaEventCreate");
  ck(cudaEventCreate(&b), "cudaEventCreate");
  run();  // warm-up
  std::vector<double> t;
  for (int smp = 0; smp < 10; ++smp) {
    ck(cudaEventRecord(a, s), "cudaEventRecord");
    run();
    ck(cudaEventRecord(b, s), "cudaEventRecord");
    ck(cudaEventSynchronize(b), "cudaEventSynchronize");
    float ms = 0;
    ck(cudaEventElapsedTime(&ms, a, b), "cudaEventElapsedTime");
    t.push_back(ms * 1e-3 / reps);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  if (exec) cudaGraphExecDestroy(exec);
  if (graph) cudaGraphDestroy(graph);
  std::nth_element(t.begin(), t.begin() + 5, t.end());
  return t[5];
}

// Seconds per device-to-device copy of `bytes`, cached per size.
double copy_seconds(std::size_t bytes) {
  static std::map<std::size_t, double> cache;
  if (auto it = cache.find(bytes); it != cache.end()) return it->second;
  DevBuf dst(bytes);
  const void* src = gradient(bytes / 4);
  const double t = timed([&] { ck(cudaMemcpyAsync(dst.p, src, bytes, cudaMemcpyDeviceToDevice, bench_stream()), "copy"); },
                         reps_for(bytes));
  cache[bytes] = t;
  return t;
}

void report(benchmark::State& state, std::size_t in_bytes, double seconds, double moved, double msg_bytes) {
  for (auto _ : state) state.SetIterationTime(seconds);
  const double copy = copy_seconds(in_bytes);
  state.counters["bytes_moved"] = moved;
  state.counters["GBps"] = moved / seconds * 1e-9;
  state.counters["roofline"] = (moved / seconds) / (2.0 * static_cast<double>(in_bytes) / copy);
  state.counters["vs_copy"] = copy / seconds;
  if (msg_bytes > 0) state.counters["ratio"] = static_cast<double>(in_bytes) / msg_bytes;
}

enum class Op { Encode, EncodeEf, Decode, DecodeAdd };

void bm_codec(benchmark::State& state, const std::string& spec, Op op) {
  const gradwire::Codec c = gradwire::make_codec(spec);
  const std::size_t bytes = static_cast<std::size_t>(state.range(0)), n = bytes / 4;
  const float* x = gradient(n);
  const std::size_t cap = c.max_encoded_bytes(n);
  DevBuf msg(cap), res(op == Op::EncodeEf ? 4 * n : 0), out(op >= Op::Decode ? 4 * n : 0);
  gradwire::cuda::Status st;
  ck(cudaMemset(res.p, 0, op == Op::EncodeEf ? 4 * n : 0), "cudaMemset");
  std::uint64_t step = 0;
  gradwire::cuda::encode_async(c, x, gradwire::DType::Float32, n, 0, 7, ++step, msg.as<std::byte>(), cap, nullptr, st,
                               bench_stream());
  const std::size_t msg_bytes = st.check(bench_stream());
  double moved = static_cast<double>(bytes) + static_cast<double>(msg_bytes);
  double t = 0;
  bool graphed = false;
  try {
    switch (op) {
      case Op::Encode:
      case Op::EncodeEf: {
        float* r = op == Op::EncodeEf ? res.as<float>() : nullptr;
        if (r) moved += 2.0 * static_cast<double>(bytes);
        t = timed([&] {
              gradwire::cuda::encode_async(c, x, gradwire::DType::Float32, n, 0, 7, ++step, msg.as<std::byte>(), cap, r,
                                           st, bench_stream());
            },
            reps_for(bytes), &graphed);
        break;
      }
      case Op::Decode:
        t = timed([&] {
              gradwire::cuda::decode_async(c, msg.as<std::byte>(), msg_bytes, out.p, gradwire::DType::Float32, n, st,
                                           bench_stream());
            },
            reps_for(bytes), &graphed);
        break;
      case Op::DecodeAdd: {
        ck(cudaMemset(out.p, 0, 4 * n), "cudaMemset");
        if (c.sparse()) {
          // Only the entries the message carries are read and written.
          const std::size_t vsize = c.spec().value == gradwire::ValueType::F16 ? 2 : 4;
          const std::size_t isize = c.kind() == gradwire::CodecKind::RandK ? 0 : (c.spec().index == gradwire::IndexCoding::Delta ? 1 : 4);
          const double nnz = static_cast<double>(msg_bytes - 56) / static_cast<double>(vsize + isize);
          moved = static_cast<double>(msg_bytes) + 8.0 * nnz;
        } else {
          moved += static_cast<double>(bytes);  // the accumulator is read as well as written
        }
        t = timed([&] { gradwire::cuda::decode_add_async(c, msg.as<std::byte>(), msg_bytes, out.as<float>(), n, st, bench_stream()); },
                  reps_for(bytes), &graphed);
        break;
      }
    }
    st.check(bench_stream());
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  report(state, bytes, t, moved, static_cast<double>(msg_bytes));
  state.counters["graph"] = graphed ? 1 : 0;  // 0: timed as direct launches (capture failed)
}

void bm_copy(benchmark::State& state) {
  const std::size_t bytes = static_cast<std::size_t>(state.range(0));
  const double t = copy_seconds(bytes);
  report(state, bytes, t, 2.0 * static_cast<double>(bytes), 0);
}

// gw_codec_bench's specs.
const char* const kSpecs[] = {
    "none", "fp16", "bf16", "q8", "q4", "q2", "q1", "q8:round=nearest", "q4:round=nearest",
    "sign", "topk:0.01", "topk:0.01,index=delta,value=f16", "randk:0.01", "threshold:3e-3"};

std::string no_gpu_reason() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) return std::string("no usable CUDA device: ") + cudaGetErrorString(e);
  if (n == 0) return "no CUDA device present";
  return {};
}

void register_all() {
  const auto sizes = [](benchmark::internal::Benchmark* b) {
    b->Arg(4 << 20)->Arg(256 << 20)->UseManualTime()->Iterations(1)->Unit(benchmark::kMillisecond);
  };
  sizes(benchmark::RegisterBenchmark("copy", bm_copy));
  for (const char* s : kSpecs) {
    const std::string name(s);
    sizes(benchmark::RegisterBenchmark(("encode/" + name).c_str(), bm_codec, name, Op::Encode));
    sizes(benchmark::RegisterBenchmark(("encode_ef/" + name).c_str(), bm_codec, name, Op::EncodeEf));
    sizes(benchmark::RegisterBenchmark(("decode/" + name).c_str(), bm_codec, name, Op::Decode));
    sizes(benchmark::RegisterBenchmark(("decode_add/" + name).c_str(), bm_codec, name, Op::DecodeAdd));
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::string why = no_gpu_reason();
  if (!why.empty()) {
    std::printf("gw_codec_bench_gpu: skipped: %s\n", why.c_str());
    return 0;
  }
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) benchmark::AddCustomContext("gpu", prop.name);
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
