// Device plans on a GPU, timed: for each codec, a Memory::Device allreduce plan of -n bytes of
// float32 (error feedback on) run -i times on a stream after -x warm-up runs; per run the wall
// time to stream completion (mean over ranks, then over runs), the plan's encode/decode split,
// the bytes across PCIe and on the wire, and the transport and executor it reports. Beside it,
// on each rank's GPU, the codec kernels alone (cuda::encode_async + decode_async of the whole
// buffer, CUDA events, median of -i): the reference for "within 1.5x of the kernels' own
// time". Public API plus cuda/codec_cuda.hpp, so it also builds against a tree from before
// issue 10 (-DGW_PLAN_BENCH_OLD_STATS: PlanStats had no executor or pcie_bytes there).
//
//   mpirun -np 1 gw_plan_bench_gpu -n 64M --codec q8 --codec q4 --codec fp16
//   CUDA_VISIBLE_DEVICES=0 mpirun --oversubscribe -np 4 gw_plan_bench_gpu -n 64M --codec q8
#include <cuda_runtime.h>
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <gradwire/codec.hpp>
#include <gradwire/communicator.hpp>
#include <gradwire/plan.hpp>

#include "codec_cuda.hpp"

namespace {

std::size_t parse_bytes(const std::string& s) {
  const char u = s.empty() ? '0' : s.back();
  const double v = std::atof(s.c_str());
  const double m = u == 'K' ? 1024.0 : u == 'M' ? 1048576.0 : u == 'G' ? 1073741824.0 : 1.0;
  return static_cast<std::size_t>(v * m);
}

double mean_over_ranks(double v) {
  int p = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &p);
  MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  return v / p;
}

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  std::fprintf(stderr, "gw_plan_bench_gpu: %s: %s\n", what, cudaGetErrorString(e));
  MPI_Abort(MPI_COMM_WORLD, 1);
}

// Median time (ms) of the codec kernels alone: encode (with a residual) + decode of n floats.
double kernels_ms(const gradwire::Codec& codec, const float* d_in, float* d_out, float* d_res,
                  std::size_t n, int iters, cudaStream_t s) {
  std::byte* msg = nullptr;
  const std::size_t cap = codec.max_encoded_bytes(n);
  check(cudaMalloc(&msg, cap), "cudaMalloc");
  gradwire::cuda::Status st;
  cudaEvent_t a, b;
  check(cudaEventCreate(&a), "cudaEventCreate");
  check(cudaEventCreate(&b), "cudaEventCreate");
  std::vector<float> ms;
  for (int i = 0; i < iters + 2; ++i) {
    check(cudaEventRecord(a, s), "cudaEventRecord");
    const std::size_t bytes = gradwire::cuda::encode_async(codec, d_in, gradwire::DType::Float32, n, 0, 1,
                                                           static_cast<std::uint64_t>(i), msg, cap, d_res, st, s);
    gradwire::cuda::decode_async(codec, msg, bytes, d_out, gradwire::DType::Float32, n, st, s);
    check(cudaEventRecord(b, s), "cudaEventRecord");
    st.check(s);
    float t = 0;
    check(cudaEventElapsedTime(&t, a, b), "cudaEventElapsedTime");
    if (i >= 2) ms.push_back(t);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  cudaFree(msg);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  std::size_t bytes = 64u << 20;
  int iters = 20, warm = 5;
  std::vector<std::string> codecs;
  std::string algo = "sra";
  for (int i = 1; i < argc; ++i) {
    const std::string f = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (f == "-n") bytes = parse_bytes(next());
    else if (f == "-i") iters = std::max(1, std::atoi(next().c_str()));
    else if (f == "-x") warm = std::max(0, std::atoi(next().c_str()));
    else if (f == "--codec") codecs.push_back(next());
    else if (f == "--algo") algo = next();
    else {
      std::fprintf(stderr, "usage: gw_plan_bench_gpu [-n BYTES[K|M|G]] [-i N] [-x N] [--algo A] --codec SPEC...\n");
      MPI_Finalize();
      return 2;
    }
  }
  if (codecs.empty()) codecs = {"q8", "q4", "fp16"};
  int rank = 0, P = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &P);
  int ndev = 0;
  if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
    if (rank == 0) std::fprintf(stderr, "gw_plan_bench_gpu: skipped: no CUDA device\n");
    MPI_Finalize();
    return 77;
  }
  MPI_Comm local;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local);
  int lr = 0;
  MPI_Comm_rank(local, &lr);
  MPI_Comm_free(&local);
  check(cudaSetDevice(lr % ndev), "cudaSetDevice");
  const std::size_t n = bytes / sizeof(float);
  {
    gradwire::Communicator comm(MPI_COMM_WORLD);
    float *d_in = nullptr, *d_out = nullptr, *d_res = nullptr;
    check(cudaMalloc(&d_in, n * 4), "cudaMalloc");
    check(cudaMalloc(&d_out, n * 4), "cudaMalloc");
    check(cudaMalloc(&d_res, n * 4), "cudaMalloc");
    check(cudaMemset(d_res, 0, n * 4), "cudaMemset");
    std::vector<float> h(n);
    for (std::size_t i = 0; i < n; ++i) h[i] = static_cast<float>((i * 2654435761u + rank) % 2001) / 250.0f - 4.0f;
    check(cudaMemcpy(d_in, h.data(), n * 4, cudaMemcpyHostToDevice), "cudaMemcpy");
    cudaStream_t s;
    check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
    if (rank == 0) {
      std::printf("# gw_plan_bench_gpu: %d rank(s), %d GPU(s) visible, %zu bytes float32, algorithm %s, "
                  "%d runs after %d warm-up\n", P, ndev, bytes, algo.c_str(), iters, warm);
      std::printf("# codec  transport  executor  total_ms  encode_ms  decode_ms  stage_ms  kernels_ms  "
                  "total/kernels  pcie_B/rank  message_B  pcie/message  wire_B/rank\n");
    }
    for (const std::string& spec : codecs) {
      gradwire::PlanConfig cfg;
      cfg.count = n;
      cfg.codec = spec;
      cfg.algorithm = algo;
      cfg.error_feedback = true;
      cfg.op = gradwire::ReduceOp::Avg;
      cfg.memory = gradwire::Memory::Device;
      gradwire::Plan plan(comm, cfg);
      for (int i = 0; i < warm; ++i) {
        plan.run_on_stream(d_in, d_out, s);
        check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
      }
      double total = 0, enc = 0, dec = 0, stage = 0, pcie = 0, wire = 0;
      for (int i = 0; i < iters; ++i) {
        MPI_Barrier(MPI_COMM_WORLD);
        const double t0 = now();
        plan.run_on_stream(d_in, d_out, s);
        check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
        total += now() - t0;
        const gradwire::PlanStats& st = plan.stats();
        enc += st.encode_s;
        dec += st.decode_s;
        stage += st.stage_s;
        wire = static_cast<double>(st.wire_bytes);
#ifndef GW_PLAN_BENCH_OLD_STATS
        pcie = static_cast<double>(st.pcie_bytes);
#else
        pcie = 2.0 * static_cast<double>(n * 4);  // the old path: the whole buffer down and up
#endif
      }
      const gradwire::Codec codec(gradwire::parse_codec(spec));
      const double kms = mean_over_ranks(kernels_ms(codec, d_in, d_out, d_res, n, iters, s));
      const double tms = mean_over_ranks(total / iters * 1e3);
      const double ems = mean_over_ranks(enc / iters * 1e3), dms = mean_over_ranks(dec / iters * 1e3);
      const double sms = mean_over_ranks(stage / iters * 1e3);
      const double pc = mean_over_ranks(pcie), wb = mean_over_ranks(wire);
      const double msg = static_cast<double>(codec.max_encoded_bytes(n));
#ifndef GW_PLAN_BENCH_OLD_STATS
      const std::string executor = plan.stats().executor;
#else
      const std::string executor = "host(old)";
#endif
      if (rank == 0) {
        std::printf("%-6s  %-22s  %-9s  %8.3f  %9.3f  %9.3f  %8.3f  %10.3f  %13.2f  %11.0f  %9.0f  %12.2f  %11.0f\n",
                    spec.c_str(), plan.stats().transport.c_str(), executor.c_str(), tms, ems, dms, sms, kms,
                    tms / kms, pc, msg, pc / msg, wb);
        std::fflush(stdout);
      }
    }
    cudaStreamDestroy(s);
    cudaFree(d_in);
    cudaFree(d_out);
    cudaFree(d_res);
  }
  MPI_Finalize();
  return 0;
}
