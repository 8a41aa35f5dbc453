// Plan: agreement on the configuration, the choice of algorithm, the workspace and residual
// it owns, the polling loop (blocking runs and requests share it), statistics, and the
// residual file (docs/compressed-collectives.md). Device-memory plans (CUDA builds) stage
// through pinned host buffers the plan owns and run the same host algorithm.
#include "gradwire/plan.hpp"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <zlib.h>

#include <climits>
#include <cmath>

#include "bounded.hpp"
#include "check.hpp"
#include "collectives/algorithms.hpp"
#include "collectives/cost_probe.hpp"
#include "collectives/dgc.hpp"
#include "collectives/powersgd.hpp"
#include "collectives/powersgd_device.hpp"  // declarations only; defined in CUDA builds
#include "collectives/reduce_scatter.hpp"
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
  return c == PlanCollective::Allreduce   ? "allreduce"
         : c == PlanCollective::Allgather ? "allgather"
                                          : "reduce-scatter";
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
constexpr std::uint32_t kFileVersion = 2;  // 2: CRC-32 trailer, finite values only

// Plans send messages of up to 4 bytes per element, sized in bytes with MPI's int counts.
constexpr std::size_t kMaxPlanElements = static_cast<std::size_t>(INT_MAX) / 4;

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
  std::uint64_t id = 0;          // this plan's id on its communicator (checked mode, messages)
  std::int64_t run_deadline = 0;  // monotonic ns: when the run in flight passes its deadline
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
      // Bounded by the run's own deadline (passed already after a recovered timeout: one last
      // poll) and never aborting: a peer that is gone may never complete the run, so what MPI
      // may still use (workspace, transports, communicators) is leaked quietly instead.
      try {
        while (!poll() && detail::monotonic_ns() < run_deadline) sched_yield();
      } catch (...) {
      }
      if (in_flight) broken = "abandoned";
    }
    if (!broken.empty()) {
      // A run that failed or was abandoned may have left operations posted that peers still
      // complete: keep everything MPI may touch (leaked quietly) rather than free it.
      flight->plan = nullptr;
      (void)algo.release();
      (void)t.release();
      (void)tlocal.release();
      (void)tleaders.release();
      return;
    }
    flight->plan = nullptr;
    release_staging();
    algo.reset();
    t.reset();
    tlocal.reset();
    tleaders.reset();
    for (MPI_Comm m : {comm, local, leaders}) detail::unwatch(*c, m);
    free_comm(comm);
    free_comm(local);
    free_comm(leaders);
  }

  [[noreturn]] void fail(ErrorCode code, const std::string& cause) const { c->fail(code, call, cause); }

  void prepare_device();
  void release_staging() noexcept;
  void run_device(const void* send, void* recv, void* stream, bool wait_result);
  void make_device_powersgd(const coll::AlgoParams& p);
  void agree();
  void check_config();
  std::string arg_error;  // why this rank rejects the configuration (agreed on in agree())
  ErrorCode arg_code = ErrorCode::InvalidArgument;
  void choose();
  void decide_by_cost(std::string& name);
  void check_run(const void* send, void* recv);
  // Checked mode: every rank runs this plan now (not another plan, not a dense call).
  void check_agreement() {
    if (!c->checked) return;
    detail::CallKey k;
    k.collective = "plan run";
    k.dtype = static_cast<std::uint64_t>(cfg.dtype);
    k.op = static_cast<std::uint64_t>(cfg.op);
    k.count = cfg.count;
    k.plan = id;
    detail::agree_on_call(*c, call, k);
  }
  void begin(const void* send, void* recv);
  bool poll();
  [[noreturn]] void run_failed(const Error& e);
  void drop_non_finite_residual() noexcept;
  void wait_blocking(OnTimeout policy);
  // The residual keyed by global element: this rank's slots added to sum; and the reverse,
  // a global sum shared out over the `holders` ranks with a full-range slot.
  void add_residual(std::vector<double>& sum) const;
  void set_residual(const std::vector<double>& sum, int holders);
  std::size_t global_elements() const {
    return cfg.collective == PlanCollective::Allreduce
               ? cfg.count
               : cfg.count * static_cast<std::size_t>(c->size);  // allgather, reduce-scatter
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
      {"argument-invalid", arg_error.empty() ? 0u : 1u},
      {"codec-invalid", codec_ok ? 0u : 1u},  // last three: flags, not compared
  };
  constexpr int n = sizeof(fields) / sizeof(fields[0]);
  std::uint64_t buf[2 * n];
  for (int i = 0; i < n; ++i) {
    buf[i] = fields[i].v;
    buf[n + i] = ~fields[i].v;
  }
  {
    const MPI_Comm cc = c->comm;
    const std::vector<std::uint64_t> out = detail::bounded_of(
        *c, call, "MPI_Iallreduce", std::vector<std::uint64_t>(buf, buf + 2 * n),
        [cc](void* b, MPI_Request* r) {
          return MPI_Iallreduce(MPI_IN_PLACE, b, 2 * n, MPI_UINT64_T, MPI_MAX, cc, r);
        });
    std::copy(out.begin(), out.end(), buf);
  }
  if (buf[n - 2] != 0) {
    fail(arg_error.empty() ? ErrorCode::InvalidArgument : arg_code,
         arg_error.empty() ? "the plan's arguments were rejected on another rank (see its message)"
                           : arg_error);
  }
  if (buf[n - 1] != 0) {
    fail(ErrorCode::InvalidArgument,
         codec_ok ? "a codec spec was rejected on another rank" : codec_error);
  }
  std::string differ;
  for (int i = 0; i < n - 3; ++i) {
    if (buf[i] != ~buf[n + i]) differ += std::string(differ.empty() ? "" : ", ") + fields[i].name;
  }
  if (!differ.empty()) {
    fail(ErrorCode::Mismatch, "ranks made this plan with different " + differ +
                                  " (this rank: count=" + std::to_string(cfg.count) +
                                  ", codec=" + canon + ", algorithm=" + cfg.algorithm + ")");
  }
  if (buf[n - 3] != 0) {
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
  if (cfg.collective == PlanCollective::ReduceScatter) in_bytes *= static_cast<std::size_t>(c->size);
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
  if (cfg.collective == PlanCollective::ReduceScatter) {
    if (a != "auto" && a != "dense")
      fail(ErrorCode::InvalidArgument,
           "reduce-scatter plans take algorithm auto or dense, not '" + a + "'");
    if (a == "dense" && !none)
      fail(ErrorCode::InvalidArgument, "algorithm dense sends uncompressed data: use codec none");
    if (cfg.dtype != DType::Float32)
      fail(ErrorCode::Unsupported, "reduce-scatter plans take float32");
    name = none ? "dense" : "compressed-reduce-scatter";
  } else if (cfg.collective == PlanCollective::Allgather) {
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
  if (a == "auto" && cfg.collective == PlanCollective::Allreduce && cfg.dtype == DType::Float32 &&
      (name == "sra" || name == "sparse-allgather")) {
    decide_by_cost(name);
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
  // MPI_Comm_idup under the deadline and policy (MPI_Comm_dup could wait forever for a rank
  // that gave up on an earlier step).
  auto bounded_dup = [&](MPI_Comm from) {
    std::vector<std::byte> holder(sizeof(MPI_Comm));
    holder = detail::bounded(*c, call, "MPI_Comm_idup", std::move(holder),
                             [from](void* b, MPI_Request* r) {
                               return MPI_Comm_idup(from, static_cast<MPI_Comm*>(b), r);
                             });
    MPI_Comm out = MPI_COMM_NULL;
    std::memcpy(&out, holder.data(), sizeof out);
    MPI_Comm_set_errhandler(out, MPI_ERRORS_RETURN);
    detail::watch(*c, out);  // revoked with the communicator when a peer dies
    return out;
  };
  comm = bounded_dup(c->comm);
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
    } else if (cfg.collective == PlanCollective::ReduceScatter) {
      algo = coll::make_reduce_scatter(*t, p);
    } else if (name == "dense") {
      algo = coll::make_dense_allreduce(*t, p);
    } else if (name == "sra") {
      algo = coll::make_sra(*t, p);
    } else if (name == "shared-grid") {
      algo = coll::make_shared_grid(*t, p);
    } else if (name == "sparse-allgather") {
      algo = coll::make_sparse(*t, p);
    } else if (name == "powersgd" && device) {
      make_device_powersgd(p);
    } else if (name == "powersgd") {
      algo = coll::make_powersgd(*t, p, cfg.powersgd_rank, cfg.shapes);
    } else {  // hier
      local = bounded_dup(c->local);
      tlocal = std::make_unique<detail::MpiTransport>(local, ops, *c, call);
      std::unique_ptr<coll::Algorithm> inner;
      if (c->leaders != MPI_COMM_NULL) {
        leaders = bounded_dup(c->leaders);
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

// "auto" on a flat communicator: dense unless the cost model, from measured (or cached) and
// agreed figures, predicts that compression pays (collectives/cost_model.hpp).
void Plan::Impl::decide_by_cost(std::string& name) {
  detail::bounded_arrival(*c, call);  // the probe's blocking calls then meet no late peer
  detail::Armed guard(c->watch, c->timeout_s, call);
  const Codec codec(spec);
  const coll::CostMeasurement m = coll::measure_costs(
      c->comm, codec, [&](int rc, const char* what) { c->check_mpi(rc, call, what); });
  const coll::CostDecision d = coll::decide_allreduce(m.in, name, codec, cfg.count, c->size);
  name = d.algorithm;
  stats.predicted_s = d.predicted_s;
  stats.predicted_dense_s = d.dense_s;
  stats.predicted_compressed_s = d.compressed_s;
  stats.cost_source = m.source;
}

void Plan::Impl::check_run(const void* send, void* recv) {
  if (c->finalized) fail(ErrorCode::Finalized, "plan used after its communicator's finalize()");
  detail::check_not_failed(*c, call);  // a peer died: PeerFailed again, not "unusable"
  if (!broken.empty()) fail(ErrorCode::InvalidArgument, "plan unusable after a failed run: " + broken);
  // After a recovered timeout the previous run may have completed since: one poll finds out.
  if (in_flight && !poll())
    fail(ErrorCode::InvalidArgument, "the previous run of this plan has not completed");
  if (cfg.count > 0 && (!send || !recv)) fail(ErrorCode::InvalidArgument, "null buffer with nonzero count");
}

void Plan::Impl::begin(const void* send, void* recv) {
  t0 = now_s();
  t->sent_bytes = 0;
  if (tlocal) tlocal->sent_bytes = 0;
  if (tleaders) tleaders->sent_bytes = 0;
  in_flight = true;
  run_deadline = detail::monotonic_ns() + detail::timeout_ns(c->timeout_s);
  c->board.enter(detail::ProgressBoard::PlanRun);
  try {
    // DGC: clipping and the velocity, before any codec (the plan's own buffer goes out).
    if (dgc && cfg.count > 0) send = dgc->prepare(static_cast<const float*>(send));
    algo->begin(send, recv, step);
  } catch (const Error& e) {
    in_flight = false;
    run_failed(e);
  }
}

// A run that failed on this rank: the plan is unusable; the other ranks' timeout messages
// name this rank (progress board); the message names the rank, the plan and its step.
void Plan::Impl::run_failed(const Error& e) {
  c->board.failed(detail::ProgressBoard::PlanRun,
                  std::string(e.what()).find("non-finite") != std::string::npos);
  const std::string cause =
      "plan " + std::to_string(id) + ", step " + std::to_string(step) + ": " + e.what();
  broken = cause;
  fail(e.code(), cause);
}

bool Plan::Impl::poll() {
  if (!in_flight) return true;
  bool done = false;
  try {
    done = algo->progress();
  } catch (const Error& e) {
    in_flight = false;
    run_failed(e);
  }
  if (!done) return false;
  in_flight = false;
  ++step;
  drop_non_finite_residual();
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
  if (p.c->checked) {
    detail::CallKey k;
    k.collective = "plan create";
    k.dtype = static_cast<std::uint64_t>(config.dtype);
    k.op = static_cast<std::uint64_t>(config.op);
    k.count = config.count;
    k.plan = p.c->plans_made + 1;
    detail::agree_on_call(*p.c, p.call, k);
  }
  p.id = ++p.c->plans_made;
  p.c->board.enter(detail::ProgressBoard::Dense);  // creation is on the communicator itself
  p.check_config();
  if (p.arg_error.empty()) p.prepare_device();
  p.agree();
  p.choose();
  p.flight->plan = impl_.get();
}

// Local checks of the configuration, before anything is allocated; agree() makes every rank
// fail when one does, so no rank is left waiting.
void Plan::Impl::check_config() {
  auto reject = [&](ErrorCode code, const std::string& why) {
    if (arg_error.empty()) arg_error = why, arg_code = code;
  };
  if (!is_valid(cfg.dtype)) {
    reject(ErrorCode::InvalidArgument,
           "invalid dtype value " + std::to_string(static_cast<int>(cfg.dtype)));
  } else if (!is_valid(cfg.op)) {
    reject(ErrorCode::InvalidArgument, "invalid op value " + std::to_string(static_cast<int>(cfg.op)));
  } else if (static_cast<int>(cfg.collective) < 0 ||
             static_cast<int>(cfg.collective) > static_cast<int>(PlanCollective::ReduceScatter)) {
    reject(ErrorCode::InvalidArgument, "invalid collective value " +
                                           std::to_string(static_cast<int>(cfg.collective)));
  } else if (cfg.count > kMaxPlanElements ||
             (cfg.collective != PlanCollective::Allreduce &&
              cfg.count > kMaxPlanElements / static_cast<std::size_t>(c->size))) {
    reject(ErrorCode::InvalidArgument,
           "count " + std::to_string(cfg.count) + " is above what plans support (" +
               std::to_string(kMaxPlanElements) +
               " elements in all, so that every message size fits MPI's int count); split the "
               "buffer into several plans");
  }
}

void Plan::Impl::drop_non_finite_residual() noexcept {
  // One NaN or Inf gradient must not poison every later step through error feedback: a
  // non-finite residual element is reset to 0 (the step that produced it already carried the
  // non-finite value in its own result).
  for (auto& sl : algo->slots) {
    bool bad = false;
    for (std::size_t i = 0; i < sl.length; ++i) bad |= !std::isfinite(sl.data[i]);
    if (!bad) continue;
    for (std::size_t i = 0; i < sl.length; ++i)
      if (!std::isfinite(sl.data[i])) sl.data[i] = 0.0f;
  }
}

Plan::~Plan() = default;
Plan::Plan(Plan&&) noexcept = default;
Plan& Plan::operator=(Plan&&) noexcept = default;

void Plan::run(const void* send, void* recv) {
  Impl& p = *impl_;
  if (p.cfg.memory == Memory::Device) return p.run_device(send, recv, nullptr, true);
  p.check_run(send, recv);
  p.check_agreement();
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
  p.check_agreement();
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

// Device powersgd (cuBLAS/cuSOLVER) makes handles and device memory, which can fail on one
// rank only: the ranks agree on the outcome, so none is left waiting in the first run. Throws
// a plain Error; choose() reports it.
void Plan::Impl::make_device_powersgd(const coll::AlgoParams& p) {
#if GRADWIRE_HAVE_CUDA
  std::string why;
  ErrorCode code = ErrorCode::Cuda;
  try {
    algo = coll::make_powersgd_device(*t, p, cfg.powersgd_rank, cfg.shapes);
  } catch (const Error& e) {
    why = e.what();
    code = e.code();
  }
  const MPI_Comm cc = c->comm;
  const int any = detail::bounded_of(*c, call, "MPI_Iallreduce", std::vector<int>{why.empty() ? 0 : 1},
                                     [cc](void* b, MPI_Request* r) {
                                       return MPI_Iallreduce(MPI_IN_PLACE, b, 1, MPI_INT, MPI_MAX,
                                                             cc, r);
                                     })[0];
  if (!why.empty()) throw Error(code, why);
  if (any)
    throw Error(ErrorCode::Cuda, "gradwire: powersgd (device): another rank could not set it up "
                                 "(see its message)");
  stats.transport = "mpi+device-powersgd";
#else
  (void)p;
  throw Error(ErrorCode::Unsupported, "device-memory plan: gradwire was built without CUDA");
#endif
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
  if (algo->on_device()) {  // powersgd on the GPU: no staging (collectives/powersgd_device.hpp)
    const double t_start = now_s();
    algo->set_stream(stream);
    begin(send, recv);
    wait_blocking(c->policy);
    try {
      if (wait_result) wait([&] { return cudaStreamQuery(s); }, "cudaStreamQuery (result)");
    } catch (const Error& e) {
      broken = e.what();
      throw;
    }
    stats.stage_s = 0;
    stats.total_s = now_s() - t_start;
    return;
  }
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
  p.algo->slots_to_residual();
  if (p.dgc) p.dgc->reset();
}

// File (version 2): "GWRESID1", u32 version 2, u32 collective, u64 elements, then per global
// element the float64 sum of every rank's residual for it, then the u32 CRC-32 (zlib) of
// everything before it; little endian, as the host. Loading rejects a wrong checksum, a
// non-finite value and trailing bytes (docs/compressed-collectives.md).
void Plan::save_residual(const std::string& path) const {
  Impl& p = *impl_;
  if (p.c->finalized) p.fail(ErrorCode::Finalized, "plan used after its communicator's finalize()");
  if (p.in_flight) p.fail(ErrorCode::InvalidArgument, "save_residual while a run is in flight");
  const std::size_t n = p.global_elements();
  std::vector<double> sum(n, 0.0);
  p.add_residual(sum);
  const MPI_Comm cc = p.c->comm;
  const bool root = p.c->rank == 0;
  sum = detail::bounded_of(*p.c, p.call, "MPI_Ireduce", sum, [cc, n, root](void* b, MPI_Request* r) {
    return MPI_Ireduce(root ? MPI_IN_PLACE : b, b, static_cast<int>(n), MPI_DOUBLE, MPI_SUM, 0,
                       cc, r);
  });
  std::vector<int> ok{1};
  if (root) {
    std::vector<char> bytes(24 + n * 8);
    const std::uint32_t version = kFileVersion, coll = static_cast<std::uint32_t>(p.cfg.collective);
    const std::uint64_t count = n;
    std::memcpy(bytes.data(), kMagic, 8);
    std::memcpy(bytes.data() + 8, &version, 4);
    std::memcpy(bytes.data() + 12, &coll, 4);
    std::memcpy(bytes.data() + 16, &count, 8);
    if (n > 0) std::memcpy(bytes.data() + 24, sum.data(), n * 8);
    const std::uint32_t crc = static_cast<std::uint32_t>(
        crc32_z(crc32_z(0, nullptr, 0), reinterpret_cast<const Bytef*>(bytes.data()), bytes.size()));
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    f.write(reinterpret_cast<const char*>(&crc), 4);
    ok[0] = f.good() ? 1 : 0;
  }
  ok = detail::bounded_of(*p.c, p.call, "MPI_Ibcast", ok, [cc](void* b, MPI_Request* r) {
    return MPI_Ibcast(b, 1, MPI_INT, 0, cc, r);
  });
  if (!ok[0]) p.fail(ErrorCode::InvalidArgument, "save_residual: cannot write '" + path + "'");
}

namespace {

// Reads and checks a residual file on rank 0; "" on success, else why not.
std::string read_residual(const std::string& path, PlanCollective want, std::size_t n,
                          std::vector<double>& sum) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return "cannot open '" + path + "'";
  std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  char magic[8] = {0};
  std::uint32_t version = 0, coll = 0;
  std::uint64_t count = 0;
  if (bytes.size() >= 24) {
    std::memcpy(magic, bytes.data(), 8);
    std::memcpy(&version, bytes.data() + 8, 4);
    std::memcpy(&coll, bytes.data() + 12, 4);
    std::memcpy(&count, bytes.data() + 16, 8);
  }
  if (bytes.size() < 24 || std::memcmp(magic, kMagic, 8) != 0)
    return "'" + path + "' is not a gradwire residual file";
  if (version != kFileVersion) {
    return "'" + path + "' is a version " + std::to_string(version) +
           " residual file; this gradwire reads version " + std::to_string(kFileVersion) +
           " (with a checksum): save it again";
  }
  const auto last = static_cast<std::uint32_t>(PlanCollective::ReduceScatter);
  if (coll > last || coll != static_cast<std::uint32_t>(want) || count != n) {
    return "'" + path + "' holds " + std::to_string(count) + " elements of a " +
           (coll > last ? "?" : collective_name(static_cast<PlanCollective>(coll))) +
           " plan; this plan has " + std::to_string(n) + " of an " + collective_name(want) +
           " plan";
  }
  const std::size_t want_bytes = 24 + n * 8 + 4;
  if (bytes.size() < want_bytes) return "'" + path + "' is truncated";
  if (bytes.size() > want_bytes) {
    return "'" + path + "' has " + std::to_string(bytes.size() - want_bytes) +
           " trailing byte(s) after the checksum";
  }
  std::uint32_t crc = 0;
  std::memcpy(&crc, bytes.data() + 24 + n * 8, 4);
  const auto actual = static_cast<std::uint32_t>(crc32_z(
      crc32_z(0, nullptr, 0), reinterpret_cast<const Bytef*>(bytes.data()), 24 + n * 8));
  if (crc != actual) return "'" + path + "' fails its CRC-32 checksum (corrupted)";
  if (n > 0) std::memcpy(sum.data(), bytes.data() + 24, n * 8);
  for (std::size_t i = 0; i < n; ++i) {
    // A residual a float cannot hold is as corrupt as a NaN.
    if (!std::isfinite(sum[i]) || std::fabs(sum[i]) > 3.0e38) {
      return "'" + path + "' holds a non-finite or out-of-range value (" +
             std::to_string(sum[i]) + ") at element " + std::to_string(i);
    }
  }
  return "";
}

}  // namespace

void Plan::load_residual(const std::string& path) {
  Impl& p = *impl_;
  if (p.c->finalized) p.fail(ErrorCode::Finalized, "plan used after its communicator's finalize()");
  if (p.in_flight) p.fail(ErrorCode::InvalidArgument, "load_residual while a run is in flight");
  const std::size_t n = p.global_elements();
  std::vector<double> sum(n, 0.0);
  std::vector<char> error(256, '\0');
  int has = 0;
  for (const auto& s : p.algo->slots) has = has || s.primary;
  if (p.c->rank == 0) {
    const std::string e = read_residual(path, p.cfg.collective, n, sum);
    std::snprintf(error.data(), error.size(), "%s", e.c_str());
  }
  const MPI_Comm cc = p.c->comm;
  error = detail::bounded_of(*p.c, p.call, "MPI_Ibcast", error, [cc](void* b, MPI_Request* r) {
    return MPI_Ibcast(b, 256, MPI_CHAR, 0, cc, r);
  });
  if (error[0] == 0) {
    sum = detail::bounded_of(*p.c, p.call, "MPI_Ibcast", sum, [cc, n](void* b, MPI_Request* r) {
      return MPI_Ibcast(b, static_cast<int>(n), MPI_DOUBLE, 0, cc, r);
    });
  }
  const int holders =
      detail::bounded_of(*p.c, p.call, "MPI_Iallreduce", std::vector<int>{has},
                         [cc](void* b, MPI_Request* r) {
                           return MPI_Iallreduce(MPI_IN_PLACE, b, 1, MPI_INT, MPI_SUM, cc, r);
                         })[0];
  if (error[0] != 0)
    p.fail(ErrorCode::InvalidArgument, std::string("load_residual: ") + error.data());
  p.set_residual(sum, holders);
}

// Each rank's own slots of `from` (no communication on its communicator, which may have
// lost a rank), summed over this plan's ranks, then shared out as load_residual does.
void Plan::carry_residual(const Plan& from) {
  Impl& p = *impl_;
  const Impl& q = *from.impl_;
  if (p.in_flight) p.fail(ErrorCode::InvalidArgument, "carry_residual while a run is in flight");
  if (q.in_flight && q.broken.empty())
    p.fail(ErrorCode::InvalidArgument, "carry_residual from a plan whose run is in flight");
  const std::size_t n = p.global_elements();
  std::vector<double> sum(n + 1, 0.0);  // the last entry: ranks whose source does not fit
  if (q.cfg.collective != p.cfg.collective || q.global_elements() != n) {
    sum[n] = 1;
  } else {
    q.add_residual(sum);
  }
  int has = 0;
  for (const auto& s : p.algo->slots) has = has || s.primary;
  const MPI_Comm cc = p.c->comm;
  sum = detail::bounded_of(*p.c, p.call, "MPI_Iallreduce", sum, [cc, n](void* b, MPI_Request* r) {
    return MPI_Iallreduce(MPI_IN_PLACE, b, static_cast<int>(n + 1), MPI_DOUBLE, MPI_SUM, cc, r);
  });
  const int holders =
      detail::bounded_of(*p.c, p.call, "MPI_Iallreduce", std::vector<int>{has},
                         [cc](void* b, MPI_Request* r) {
                           return MPI_Iallreduce(MPI_IN_PLACE, b, 1, MPI_INT, MPI_SUM, cc, r);
                         })[0];
  if (sum[n] != 0) {
    p.fail(ErrorCode::InvalidArgument,
           "carry_residual: the source plan covers " + std::to_string(q.global_elements()) +
               " global elements of an " + collective_name(q.cfg.collective) +
               " plan on some rank; this one " + std::to_string(n) + " of an " +
               collective_name(p.cfg.collective) + " plan");
  }
  sum.pop_back();
  p.set_residual(sum, holders);
}

void Plan::Impl::add_residual(std::vector<double>& sum) const {
  algo->residual_to_slots();
  for (const auto& s : algo->slots)
    for (std::size_t i = 0; i < s.length; ++i) sum[s.offset + i] += s.data[i];
}

void Plan::Impl::set_residual(const std::vector<double>& sum, int holders) {
  Impl& p = *this;
  // Allreduce, reduce-scatter: only the sum over ranks reaches the result, so the total is
  // shared evenly by the ranks holding a full-range residual. Allgather: each element has one
  // holder.
  const double share =
      p.cfg.collective != PlanCollective::Allgather && holders > 0 ? 1.0 / holders : 1.0;
  for (auto& s : p.algo->slots) {
    for (std::size_t i = 0; i < s.length; ++i)
      s.data[i] = s.primary ? static_cast<float>(sum[s.offset + i] * share) : 0.0f;
  }
  p.algo->slots_to_residual();
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
