// Plan: agreement on the configuration, the choice of algorithm, the workspace and residual
// it owns, the polling loop (blocking runs and requests share it), statistics, and the
// residual file (docs/compressed-collectives.md). Device-memory plans (CUDA builds) stage
// through pinned host buffers the plan owns and run the same host algorithm.
#include "gradwire/plan.hpp"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "collectives/algorithms.hpp"
#include "collectives/dgc.hpp"
#include "collectives/powersgd.hpp"
#include "comm_impl.hpp"
#include "device_backend.hpp"
#include "gradwire/codec.hpp"
#include "gradwire/config.hpp"
#include "request_state.hpp"
#include "transport/mpi_p2p.hpp"
#include "watchdog.hpp"

#if GRADWIRE_HAVE_CUDA
#include <cuda_runtime.h>
#if defined(OPEN_MPI) && __has_include(<mpi-ext.h>)
#include <mpi-ext.h>  // MPIX_CUDA_AWARE_SUPPORT, MPIX_Query_cuda_support
#endif
#endif

namespace gradwire {

using detail::CallInfo;

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::uint64_t fnv1a(const std::string& s) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

const char* collective_name(PlanCollective c) {
  return c == PlanCollective::Allreduce ? "allreduce" : "allgather";
}

// Keeps a communicator this plan owns; freed unless MPI is already gone.
void free_comm(MPI_Comm& c) {
  int down = 0;
  MPI_Finalized(&down);
  if (!down && c != MPI_COMM_NULL) MPI_Comm_free(&c);
  c = MPI_COMM_NULL;
}

template <class T>
std::uint64_t bits_of(T v) {
  std::uint64_t b = 0;
  std::memcpy(&b, &v, sizeof v);
  return b;
}

std::uint64_t shapes_hash(const std::vector<MatrixShape>& shapes) {
  std::string s;
  for (const MatrixShape& m : shapes) s += std::to_string(m.rows) + "x" + std::to_string(m.cols) + ",";
  return fnv1a(s);
}

constexpr char kMagic[8] = {'G', 'W', 'R', 'E', 'S', 'I', 'D', '1'};

}  // namespace

// Requests hold this rather than the plan: a plan destroyed before its request is waited on
// finishes the run itself and leaves the request with nothing to do.
struct Flight {
  Plan::Impl* plan = nullptr;
};

struct Plan::Impl {
  Communicator::Impl* c = nullptr;
  PlanConfig cfg;
  CodecSpec spec;
  CallInfo call;
  std::string call_name;
  MPI_Comm comm = MPI_COMM_NULL, local = MPI_COMM_NULL, leaders = MPI_COMM_NULL;
  std::unique_ptr<detail::MpiTransport> t, tlocal, tleaders;
  std::unique_ptr<coll::Dgc> dgc;  // DGC options' state (velocity); algo may point to it
  std::unique_ptr<coll::Algorithm> algo;
  PlanStats stats;
  std::uint64_t step = 0;
  bool in_flight = false;
  std::string broken;  // set when a run failed midway: the transport state is unknown
  double t0 = 0;
  std::shared_ptr<Flight> flight = std::make_shared<Flight>();
  // Device plans: pinned staging made at construction (CUDA builds), so a run allocates
  // nothing. Allreduce stages in place (pin_out == pin_in); allgather has both.
  std::string device_error;  // why this rank cannot run a device plan (agreed on in agree())
  void* pin_in = nullptr;
  void* pin_out = nullptr;
  std::size_t in_bytes = 0, out_bytes = 0;
  void* copied = nullptr;  // cudaEvent_t recorded after the last copy back to the device

  ~Impl() {
    if (in_flight && broken.empty()) {
      try {
        wait_blocking(OnTimeout::Abort);
      } catch (const std::exception& e) {
        c->abort_job(e.what());
      }
    }
    flight->plan = nullptr;
    release_staging();
    algo.reset();
    t.reset();
    tlocal.reset();
    tleaders.reset();
    free_comm(comm);
    free_comm(local);
    free_comm(leaders);
  }

  [[noreturn]] void fail(ErrorCode code, const std::string& cause) const { c->fail(code, call, cause); }

  void prepare_device();
  void release_staging() noexcept;
  void run_device(const void* send, void* recv, void* stream, bool wait_result);
  void agree();
  void choose();
  void check_run(const void* send, void* recv);
  void begin(const void* send, void* recv);
  bool poll();
  void wait_blocking(OnTimeout policy);
  std::size_t global_elements() const {
    return cfg.collective == PlanCollective::Allreduce
               ? cfg.count
               : cfg.count * static_cast<std::size_t>(c->size);
  }
};

// Every rank contributes its fields; MAX of v and of ~v gives max and min in one reduction.
// A mismatch is reported on every rank, naming the fields, before any workspace is made.
void Plan::Impl::agree() {
  bool codec_ok = true;
  std::string codec_error;
  try {
    spec = parse_codec(cfg.codec);
    Codec check(spec);
  } catch (const Error& e) {
    codec_ok = false;
    codec_error = e.what();
  }
  const std::string canon = codec_ok ? spec.to_string() : cfg.codec;
  struct Field {
    const char* name;
    std::uint64_t v;
  };
  const Field fields[] = {
      {"collective", static_cast<std::uint64_t>(cfg.collective)},
      {"count", cfg.count},
      {"dtype", static_cast<std::uint64_t>(cfg.dtype)},
      {"op", static_cast<std::uint64_t>(cfg.op)},
      {"codec", fnv1a(canon)},
      {"algorithm", fnv1a(cfg.algorithm)},
      {"error_feedback", cfg.error_feedback ? 1u : 0u},
      {"seed", cfg.seed},
      {"memory", static_cast<std::uint64_t>(cfg.memory)},
      {"momentum", bits_of(cfg.momentum)},
      {"momentum_masking", cfg.momentum_masking ? 1u : 0u},
      {"clip_norm", bits_of(cfg.clip_norm)},
      {"warmup_steps", cfg.warmup_steps},
      {"warmup_density", bits_of(cfg.warmup_density)},
      {"powersgd_rank", cfg.powersgd_rank},
      {"shapes", shapes_hash(cfg.shapes)},
      {"device-unavailable", device_error.empty() ? 0u : 1u},
      {"codec-invalid", codec_ok ? 0u : 1u},  // last two: flags, not compared
  };
  constexpr int n = sizeof(fields) / sizeof(fields[0]);
  std::uint64_t buf[2 * n];
  for (int i = 0; i < n; ++i) {
    buf[i] = fields[i].v;
    buf[n + i] = ~fields[i].v;
  }
  {
    detail::Armed guard(c->watch, c->timeout_s, call);
    c->check_mpi(MPI_Allreduce(MPI_IN_PLACE, buf, 2 * n, MPI_UINT64_T, MPI_MAX, c->comm), call,
                 "MPI_Allreduce");
  }
  if (buf[n - 1] != 0) {
    fail(ErrorCode::InvalidArgument,
         codec_ok ? "a codec spec was rejected on another rank" : codec_error);
  }
  std::string differ;
  for (int i = 0; i < n - 2; ++i) {
    if (buf[i] != ~buf[n + i]) differ += std::string(differ.empty() ? "" : ", ") + fields[i].name;
  }
  if (!differ.empty()) {
    fail(ErrorCode::Mismatch, "ranks made this plan with different " + differ +
                                  " (this rank: count=" + std::to_string(cfg.count) +
                                  ", codec=" + canon + ", algorithm=" + cfg.algorithm + ")");
  }
  if (buf[n - 2] != 0) {
    fail(ErrorCode::Unsupported,
         device_error.empty()
             ? std::string("device-memory plan: another rank cannot run it (see its message)")
             : device_error);
  }
}

// Device plans: whether this rank can run one, and its pinned buffers. Runs before agree(),
// which tells every rank when any cannot, so no rank is left waiting in a collective.
void Plan::Impl::prepare_device() {
  if (cfg.memory != Memory::Device) return;
#if !GRADWIRE_HAVE_CUDA
  device_error =
      "device-memory plan: gradwire was built without CUDA (GRADWIRE_CUDA=OFF); use "
      "Memory::Host";
#else
  if (!c->cuda_present) {
    device_error = "device-memory plan: no CUDA device is visible on rank " +
                   std::to_string(c->rank) + "; use Memory::Host";
    return;
  }
  in_bytes = cfg.count * dtype_size(cfg.dtype);
  out_bytes = cfg.collective == PlanCollective::Allgather
                  ? in_bytes * static_cast<std::size_t>(c->size)
                  : in_bytes;
  auto cuda_failed = [&](cudaError_t e, const std::string& what) {
    cudaGetLastError();
    device_error = "device-memory plan: " + what + " failed on rank " + std::to_string(c->rank) +
                   ": " + cudaGetErrorString(e);
    release_staging();
  };
  cudaError_t e = cudaSuccess;
  if (in_bytes > 0 && (e = cudaHostAlloc(&pin_in, in_bytes, cudaHostAllocPortable)) != cudaSuccess)
    return cuda_failed(e, "cudaHostAlloc of " + std::to_string(in_bytes) + " bytes");
  if (cfg.collective == PlanCollective::Allreduce) {
    pin_out = pin_in;
  } else if (out_bytes > 0 &&
             (e = cudaHostAlloc(&pin_out, out_bytes, cudaHostAllocPortable)) != cudaSuccess) {
    return cuda_failed(e, "cudaHostAlloc of " + std::to_string(out_bytes) + " bytes");
  }
  cudaEvent_t ev = nullptr;
  if ((e = cudaEventCreateWithFlags(&ev, cudaEventDisableTiming)) != cudaSuccess)
    return cuda_failed(e, "cudaEventCreate");
  copied = ev;
#endif
}

void Plan::Impl::release_staging() noexcept {
#if GRADWIRE_HAVE_CUDA
  if (copied) {
    cudaEventSynchronize(static_cast<cudaEvent_t>(copied));  // the copy back reads pin_out
    cudaEventDestroy(static_cast<cudaEvent_t>(copied));
  }
  if (pin_out && pin_out != pin_in) cudaFreeHost(pin_out);
  if (pin_in) cudaFreeHost(pin_in);
  cudaGetLastError();
#endif
  copied = pin_in = pin_out = nullptr;
}

// The algorithm, from the agreed configuration and the (global) node layout: every rank
// chooses the same one.
void Plan::Impl::choose() {
  const std::string& a = cfg.algorithm;
  static const char* const known[] = {"auto", "dense", "sra", "shared-grid", "sparse-allgather",
                                      "hier", "powersgd"};
  bool ok = false;
  for (const char* k : known) ok = ok || a == k;
  if (!ok) {
    fail(ErrorCode::InvalidArgument,
         "unknown algorithm '" + a +
             "'; accepted: auto, dense, sra, shared-grid, sparse-allgather, hier, powersgd");
  }
  if (cfg.dtype != DType::Float32 && cfg.dtype != DType::Float16 && cfg.dtype != DType::BFloat16)
    fail(ErrorCode::Unsupported, "plans take float32, float16 or bfloat16");
  if (cfg.op != ReduceOp::Sum && cfg.op != ReduceOp::Avg)
    fail(ErrorCode::Unsupported, "plans reduce with sum or avg");
  const bool none = spec.kind == CodecKind::None;
  std::string name = a;
  if (cfg.collective == PlanCollective::Allgather) {
    if (a != "auto" && a != "dense")
      fail(ErrorCode::InvalidArgument, "allgather plans take algorithm auto or dense, not '" + a + "'");
    if (a == "dense" && !none)
      fail(ErrorCode::InvalidArgument, "algorithm dense sends uncompressed data: use codec none");
    name = none ? "dense" : "compressed-allgather";
  } else {
    const bool is16 = cfg.dtype != DType::Float32;
    if (a == "auto") {
      if (none || is16) name = "dense";
      else if (c->node_count > 1 && c->node_count < c->size) name = "hier";
      else name = spec.sparse() ? "sparse-allgather" : "sra";
    }
    if (name == "powersgd" && (!none || is16)) {
      fail(ErrorCode::InvalidArgument,
           "algorithm powersgd compresses float32 by itself: use codec none and float32");
    }
    if (name == "dense" && !none && !is16)
      fail(ErrorCode::InvalidArgument, "algorithm dense sends uncompressed data: use codec none");
    if (is16 && name != "dense") {
      fail(ErrorCode::Unsupported,
           "float16/bfloat16 plans go through the engine's dense allreduce (algorithm auto or "
           "dense); compress a float32 buffer instead");
    }
    if (is16 && !none)
      fail(ErrorCode::Unsupported, "float16/bfloat16 plans take codec none");
  }
  stats.algorithm = name;
  const bool device = cfg.memory == Memory::Device;
  stats.transport = device ? "mpi+staged-pinned" : "mpi";
#if GRADWIRE_HAVE_CUDA && defined(MPIX_CUDA_AWARE_SUPPORT)
  // Reported only: staging is the one device path, whatever MPI says.
#if MPIX_CUDA_AWARE_SUPPORT
  if (device) stats.cuda_aware_mpi = MPIX_Query_cuda_support() == 1 ? 1 : 0;
#else
  if (device) stats.cuda_aware_mpi = 0;
#endif
#endif
  call_name = "plan " + std::string(collective_name(cfg.collective)) + " " + name + " " +
              spec.to_string() + (device ? " (device, staged)" : "");
  call.collective = call_name.c_str();

  coll::AlgoParams p;
  p.count = cfg.count;
  p.dtype = cfg.dtype;
  p.op = cfg.op;
  p.codec = spec;
  p.error_feedback = cfg.error_feedback && (!none || name == "powersgd");
  p.seed = cfg.seed;
  const coll::DgcOptions dopt{cfg.momentum, cfg.momentum_masking, cfg.clip_norm,
                              cfg.warmup_steps, cfg.warmup_density};
  if (dopt.any()) {
    if (cfg.collective != PlanCollective::Allreduce || cfg.dtype != DType::Float32)
      fail(ErrorCode::InvalidArgument,
           "DGC options (momentum, clip_norm, warmup_steps) apply to float32 allreduce plans");
    if (name == "hier")
      fail(ErrorCode::Unsupported, "DGC options are not implemented for algorithm hier");
    try {
      dgc = std::make_unique<coll::Dgc>(dopt, spec, cfg.count);
    } catch (const Error& e) {
      fail(e.code(), e.what());  // deterministic in the agreed configuration
    }
    p.dgc = dgc.get();
  }

  const int ops = 4 * c->size + 8;
  c->check_mpi(MPI_Comm_dup(c->comm, &comm), call, "MPI_Comm_dup");
  MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
  t = std::make_unique<detail::MpiTransport>(comm, ops, *c, call);
  auto make_inner = [&](coll::Transport& tr, const coll::AlgoParams& q) {
    if (spec.sparse()) return coll::make_sparse(tr, q);
    if (a == "shared-grid") return coll::make_shared_grid(tr, q);
    if (none) return coll::make_dense_allreduce(tr, q);
    return coll::make_sra(tr, q);
  };
  try {
    if (cfg.collective == PlanCollective::Allgather) {
      algo = none ? coll::make_dense_allgather(*t, p) : coll::make_compressed_allgather(*t, p);
    } else if (name == "dense") {
      algo = coll::make_dense_allreduce(*t, p);
    } else if (name == "sra") {
      algo = coll::make_sra(*t, p);
    } else if (name == "shared-grid") {
      algo = coll::make_shared_grid(*t, p);
    } else if (name == "sparse-allgather") {
      algo = coll::make_sparse(*t, p);
    } else if (name == "powersgd") {
      algo = coll::make_powersgd(*t, p, cfg.powersgd_rank, cfg.shapes);
    } else {  // hier
      c->check_mpi(MPI_Comm_dup(c->local, &local), call, "MPI_Comm_dup");
      tlocal = std::make_unique<detail::MpiTransport>(local, ops, *c, call);
      std::unique_ptr<coll::Algorithm> inner;
      if (c->leaders != MPI_COMM_NULL) {
        c->check_mpi(MPI_Comm_dup(c->leaders, &leaders), call, "MPI_Comm_dup");
        tleaders = std::make_unique<detail::MpiTransport>(leaders, ops, *c, call);
        coll::AlgoParams q = p;
        q.op = ReduceOp::Sum;  // hier divides by the global size
        inner = make_inner(*tleaders, q);
      }
      algo = coll::make_hier(*tlocal, std::move(inner), p, c->size);
    }
  } catch (const Error& e) {
    // Deterministic in the agreed configuration: every rank throws the same.
    fail(e.code(), e.what());
  }
}

void Plan::Impl::check_run(const void* send, void* recv) {
  if (!broken.empty()) fail(ErrorCode::InvalidArgument, "plan unusable after a failed run: " + broken);
  if (in_flight) fail(ErrorCode::InvalidArgument, "the previous run of this plan has not completed");
  if (cfg.count > 0 && (!send || !recv)) fail(ErrorCode::InvalidArgument, "null buffer with nonzero count");
}

void Plan::Impl::begin(const void* send, void* recv) {
  t0 = now_s();
  t->sent_bytes = 0;
  if (tlocal) tlocal->sent_bytes = 0;
  if (tleaders) tleaders->sent_bytes = 0;
  in_flight = true;
  try {
    // DGC: clipping and the velocity, before any codec (the plan's own buffer goes out).
    if (dgc && cfg.count > 0) send = dgc->prepare(static_cast<const float*>(send));
    algo->begin(send, recv, step);
  } catch (const Error& e) {
    broken = e.what();
    throw;
  }
}

bool Plan::Impl::poll() {
  if (!in_flight) return true;
  bool done = false;
  try {
    done = algo->progress();
  } catch (const Error& e) {
    broken = e.what();
    in_flight = false;
    throw;
  }
  if (!done) return false;
  in_flight = false;
  ++step;
  stats.logical_bytes = cfg.count * dtype_size(cfg.dtype);
  stats.wire_bytes = t->sent_bytes + (tlocal ? tlocal->sent_bytes : 0) +
                     (tleaders ? tleaders->sent_bytes : 0);
  stats.encode_s = algo->encode_s;
  stats.decode_s = algo->decode_s;
  stats.total_s = now_s() - t0;
  stats.transfer_s = std::max(0.0, stats.total_s - stats.encode_s - stats.decode_s);
  return true;
}

void Plan::Impl::wait_blocking(OnTimeout policy) {
  detail::poll_until_done(*c, call, policy, [this] { return poll(); });
}

Plan::Plan(Communicator& comm, const PlanConfig& config) : impl_(std::make_unique<Impl>()) {
  Impl& p = *impl_;
  p.c = &comm.impl();
  p.cfg = config;
  p.call.collective = "plan";
  p.call.count = config.count;
  p.call.dtype = config.dtype;
  p.call.op = static_cast<int>(config.op);
  p.prepare_device();
  p.agree();
  p.choose();
  p.flight->plan = impl_.get();
}

Plan::~Plan() = default;
Plan::Plan(Plan&&) noexcept = default;
Plan& Plan::operator=(Plan&&) noexcept = default;

void Plan::run(const void* send, void* recv) {
  Impl& p = *impl_;
  if (p.cfg.memory == Memory::Device) return p.run_device(send, recv, nullptr, true);
  p.check_run(send, recv);
  p.begin(send, recv);
  p.wait_blocking(p.c->policy);
}

Request Plan::start(const void* send, void* recv) {
  Impl& p = *impl_;
  if (p.cfg.memory == Memory::Device) {
    p.fail(ErrorCode::Unsupported,
           "start: non-blocking requests are not implemented for device-memory plans; use "
           "run_on_stream (or run)");
  }
  p.check_run(send, recv);
  p.begin(send, recv);
  auto st = std::make_unique<Request::State>();
  // Non-owning: a plan lives no longer than its communicator (documented in plan.hpp).
  st->comm = std::shared_ptr<Communicator::Impl>(std::shared_ptr<Communicator::Impl>(), p.c);
  st->call = p.call;
  st->progress = [f = p.flight] { return f->plan == nullptr || f->plan->poll(); };
  return Request(std::move(st));
}

void Plan::run_on_stream(const void* send, void* recv, void* cuda_stream) {
  Impl& p = *impl_;
  if (p.cfg.memory != Memory::Device) {
    p.fail(ErrorCode::InvalidArgument,
           "run_on_stream takes a plan made with Memory::Device; this one is for host memory "
           "(use run or start)");
  }
  p.run_device(send, recv, cuda_stream, false);
}

// Device → pinned on the stream, a bounded wait for the stream, the host algorithm on the
// pinned buffers (the same bits as a host plan), pinned → device on the stream. A failure
// leaves the staging state unknown, so the plan is marked unusable, as for a failed host run.
void Plan::Impl::run_device(const void* send, void* recv, void* stream, bool wait_result) {
#if !GRADWIRE_HAVE_CUDA
  (void)send, (void)recv, (void)stream, (void)wait_result;
  fail(ErrorCode::Unsupported, "device-memory plan: gradwire was built without CUDA");
#else
  check_run(send, recv);
  if (cfg.count > 0 && (!detail::is_device_pointer(send) || !detail::is_device_pointer(recv)))
    fail(ErrorCode::InvalidArgument,
         std::string("device-memory plan: ") +
             (!detail::is_device_pointer(send) ? "send" : "recv") +
             " is not device memory (use a Memory::Host plan for host buffers)");
  const auto s = static_cast<cudaStream_t>(stream);
  const auto ev = static_cast<cudaEvent_t>(copied);
  auto check = [&](cudaError_t e, const char* what) {
    if (e == cudaSuccess) return;
    cudaGetLastError();
    fail(ErrorCode::Cuda, std::string(what) + " failed: " + cudaGetErrorString(e));
  };
  // Polls like the NCCL backend's events: a stuck stream becomes the communicator's timeout.
  auto wait = [&](auto query, const char* what) {
    detail::poll_until_done(*c, call, c->policy, [&] {
      const cudaError_t e = query();
      if (e != cudaSuccess && e != cudaErrorNotReady) check(e, what);
      return e == cudaSuccess;
    });
  };
  const double ts = now_s();
  double staged = 0;
  try {
    // The previous run's copy back may still read pin_out (it may have used another stream).
    wait([&] { return cudaEventQuery(ev); }, "cudaEventQuery (previous copy back)");
    if (in_bytes > 0)
      check(cudaMemcpyAsync(pin_in, send, in_bytes, cudaMemcpyDeviceToHost, s),
            "cudaMemcpyAsync (device to pinned)");
    wait([&] { return cudaStreamQuery(s); }, "cudaStreamQuery");
    staged = now_s() - ts;
  } catch (const Error& e) {
    broken = e.what();
    throw;
  }
  begin(pin_in, pin_out);
  wait_blocking(c->policy);
  const double t_back = now_s();
  try {
    if (out_bytes > 0)
      check(cudaMemcpyAsync(recv, pin_out, out_bytes, cudaMemcpyHostToDevice, s),
            "cudaMemcpyAsync (pinned to device)");
    check(cudaEventRecord(ev, s), "cudaEventRecord");
    if (wait_result) wait([&] { return cudaEventQuery(ev); }, "cudaEventQuery (copy back)");
  } catch (const Error& e) {
    broken = e.what();
    throw;
  }
  const double t_end = now_s();
  stats.stage_s = staged + (t_end - t_back);
  stats.total_s = t_end - ts;
#endif
}

const PlanStats& Plan::stats() const { return impl_->stats; }
const PlanConfig& Plan::config() const { return impl_->cfg; }
std::uint64_t Plan::step() const { return impl_->step; }

void Plan::reset_residual() {
  Impl& p = *impl_;
  if (p.in_flight) p.fail(ErrorCode::InvalidArgument, "reset_residual while a run is in flight");
  for (auto& s : p.algo->slots) std::fill(s.data, s.data + s.length, 0.0f);
  if (p.dgc) p.dgc->reset();
}

// File: "GWRESID1", u32 version 1, u32 collective, u64 elements, then per global element the
// float64 sum of every rank's residual for it (little endian, as the host).
void Plan::save_residual(const std::string& path) const {
  Impl& p = *impl_;
  if (p.in_flight) p.fail(ErrorCode::InvalidArgument, "save_residual while a run is in flight");
  const std::size_t n = p.global_elements();
  std::vector<double> sum(n, 0.0);
  for (const auto& s : p.algo->slots)
    for (std::size_t i = 0; i < s.length; ++i) sum[s.offset + i] += s.data[i];
  int ok = 1;
  std::string error;
  {
    detail::Armed guard(p.c->watch, p.c->timeout_s, p.call);
    p.c->check_mpi(MPI_Reduce(p.c->rank == 0 ? MPI_IN_PLACE : sum.data(), sum.data(),
                              static_cast<int>(n), MPI_DOUBLE, MPI_SUM, 0, p.c->comm),
                   p.call, "MPI_Reduce");
    if (p.c->rank == 0) {
      std::ofstream f(path, std::ios::binary | std::ios::trunc);
      const std::uint32_t version = 1, coll = static_cast<std::uint32_t>(p.cfg.collective);
      const std::uint64_t count = n;
      f.write(kMagic, 8);
      f.write(reinterpret_cast<const char*>(&version), 4);
      f.write(reinterpret_cast<const char*>(&coll), 4);
      f.write(reinterpret_cast<const char*>(&count), 8);
      f.write(reinterpret_cast<const char*>(sum.data()), static_cast<std::streamsize>(n * 8));
      ok = f.good() ? 1 : 0;
    }
    p.c->check_mpi(MPI_Bcast(&ok, 1, MPI_INT, 0, p.c->comm), p.call, "MPI_Bcast");
  }
  if (!ok) p.fail(ErrorCode::InvalidArgument, "save_residual: cannot write '" + path + "'");
}

void Plan::load_residual(const std::string& path) {
  Impl& p = *impl_;
  if (p.in_flight) p.fail(ErrorCode::InvalidArgument, "load_residual while a run is in flight");
  const std::size_t n = p.global_elements();
  std::vector<double> sum(n, 0.0);
  char error[256] = {0};
  int holders = 0, has = 0;
  for (const auto& s : p.algo->slots) has = has || s.primary;
  {
    detail::Armed guard(p.c->watch, p.c->timeout_s, p.call);
    if (p.c->rank == 0) {
      std::ifstream f(path, std::ios::binary);
      char magic[8] = {0};
      std::uint32_t version = 0, coll = 0;
      std::uint64_t count = 0;
      f.read(magic, 8);
      f.read(reinterpret_cast<char*>(&version), 4);
      f.read(reinterpret_cast<char*>(&coll), 4);
      f.read(reinterpret_cast<char*>(&count), 8);
      if (!f || std::memcmp(magic, kMagic, 8) != 0 || version != 1) {
        std::snprintf(error, sizeof error, "'%s' is not a gradwire residual file", path.c_str());
      } else if (coll != static_cast<std::uint32_t>(p.cfg.collective) || count != n) {
        std::snprintf(error, sizeof error,
                      "'%s' holds %llu elements of a %s plan; this plan has %zu of an %s plan",
                      path.c_str(), static_cast<unsigned long long>(count),
                      collective_name(static_cast<PlanCollective>(coll)), n,
                      collective_name(p.cfg.collective));
      } else {
        f.read(reinterpret_cast<char*>(sum.data()), static_cast<std::streamsize>(n * 8));
        if (!f) std::snprintf(error, sizeof error, "'%s' is truncated", path.c_str());
      }
    }
    p.c->check_mpi(MPI_Bcast(error, sizeof error, MPI_CHAR, 0, p.c->comm), p.call, "MPI_Bcast");
    if (error[0] == 0) {
      p.c->check_mpi(MPI_Bcast(sum.data(), static_cast<int>(n), MPI_DOUBLE, 0, p.c->comm),
                     p.call, "MPI_Bcast");
    }
    p.c->check_mpi(MPI_Allreduce(&has, &holders, 1, MPI_INT, MPI_SUM, p.c->comm), p.call,
                   "MPI_Allreduce");
  }
  if (error[0] != 0) p.fail(ErrorCode::InvalidArgument, std::string("load_residual: ") + error);
  // Allreduce: only the sum over ranks reaches the result, so the total is shared evenly by
  // the ranks holding a full-range residual. Allgather: each element has one holder.
  const double share =
      p.cfg.collective == PlanCollective::Allreduce && holders > 0 ? 1.0 / holders : 1.0;
  for (auto& s : p.algo->slots) {
    for (std::size_t i = 0; i < s.length; ++i)
      s.data[i] = s.primary ? static_cast<float>(sum[s.offset + i] * share) : 0.0f;
  }
}

void allreduce_compressed(Communicator& comm, const void* send, void* recv, std::size_t count,
                          DType dtype, ReduceOp op, const std::string& codec,
                          const std::string& algorithm) {
  PlanConfig cfg;
  cfg.count = count;
  cfg.dtype = dtype;
  cfg.op = op;
  cfg.codec = codec;
  cfg.algorithm = algorithm;
  cfg.error_feedback = false;
  Plan plan(comm, cfg);
  plan.run(send, recv);
}

}  // namespace gradwire
