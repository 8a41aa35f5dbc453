// Plan: agreement on the configuration, the choice of algorithm (collectives/registry.hpp),
// the communicators, transports and algorithm it owns, the polling loop (blocking runs and
// requests share it), statistics, and the residual's collective parts (save, load, carry;
// the file format is collectives/residual_file.hpp). Device-memory plans stage through pinned
// host buffers (collectives/staging.hpp) and run the same host algorithm.
#include "gradwire/plan.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <climits>
#include <cmath>

#include "bounded.hpp"
#include "check.hpp"
#include "collectives/algorithms.hpp"
#include "collectives/algorithms/powersgd_device.hpp"  // declarations only; defined in CUDA builds
#include "collectives/auto_switch.hpp"
#include "collectives/cost_probe.hpp"
#include "collectives/dgc.hpp"
#include "collectives/device_path.hpp"
#include "collectives/overlap.hpp"
#include "collectives/registry.hpp"
#include "collectives/residual_file.hpp"
#include "collectives/shards.hpp"
#include "collectives/state_file.hpp"
#include "collectives/slowdown.hpp"
#include "collectives/staged.hpp"
#include "collectives/staging.hpp"
#include "comm_impl.hpp"
#include "current_device.hpp"
#include "device_backend.hpp"
#include "fault/ulfm.hpp"  // FaultState (check_run)
#include "gradwire/codec.hpp"
#include "gradwire/config.hpp"
#include "request_state.hpp"
#include "timeline.hpp"
#include "transport/mpi_p2p.hpp"
#include "watchdog.hpp"

#if GRADWIRE_HAVE_CUDA
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

// Keeps a communicator this plan owns; freed unless MPI is already gone.
void free_comm(MPI_Comm& c) {
  int down = 0;
  MPI_Finalized(&down);
  if (!down && c != MPI_COMM_NULL) MPI_Comm_free(&c);
  c = MPI_COMM_NULL;
}

// AutoSwitch::combine as an MPI reduction of one record of AutoSwitch::kFigures doubles (a
// record, so that no algorithm splits the figures between calls); freed unless MPI is gone.
class FigureReduction {
 public:
  FigureReduction() = default;
  FigureReduction(const FigureReduction&) = delete;
  FigureReduction& operator=(const FigureReduction&) = delete;
  ~FigureReduction() {
    int down = 0;
    MPI_Finalized(&down);
    if (down) return;
    if (op_ != MPI_OP_NULL) MPI_Op_free(&op_);
    if (record_ != MPI_DATATYPE_NULL) MPI_Type_free(&record_);
  }
  // Returns the first failing MPI return code, or MPI_SUCCESS.
  int make() {
    int rc = MPI_Type_contiguous(coll::AutoSwitch::kFigures, MPI_DOUBLE, &record_);
    if (rc == MPI_SUCCESS) rc = MPI_Type_commit(&record_);
    if (rc == MPI_SUCCESS) rc = MPI_Op_create(&reduce, 1, &op_);
    return rc;
  }
  MPI_Datatype record() const { return record_; }
  MPI_Op op() const { return op_; }

 private:
  static void reduce(void* in, void* inout, int* len, MPI_Datatype*) {
    for (int i = 0; i < *len; ++i)
      coll::AutoSwitch::combine(static_cast<const double*>(in) + i * coll::AutoSwitch::kFigures,
                                static_cast<double*>(inout) + i * coll::AutoSwitch::kFigures);
  }
  MPI_Datatype record_ = MPI_DATATYPE_NULL;
  MPI_Op op_ = MPI_OP_NULL;
};

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

// GRADWIRE_DEVICE_STAGING=whole: device plans stage the whole buffer through host memory and
// run on the host, as before issue 10 (A/B measurements on one build; agreed in agree()).
bool whole_staging_forced() {
  const char* v = std::getenv("GRADWIRE_DEVICE_STAGING");
  return v && std::string(v) == "whole";
}

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
  std::unique_ptr<coll::Transport> t;  // MPI (host, staged whole), or a device plan's
  std::unique_ptr<detail::MpiTransport> tlocal, tleaders;
  // Device plans on the GPU (registry: device_native): the CUDA executor, the transport's
  // stream. Declared before algo, so destroyed after it (the workspace is the executor's).
  std::unique_ptr<detail::DevicePath> devpath;
  bool native = false;
  std::unique_ptr<coll::Dgc> dgc;  // DGC options' state (velocity); algo may point to it
  std::unique_ptr<coll::Algorithm> algo;
  // "auto" plans that re-decide from their runs (collectives/auto_switch.hpp): the candidate
  // not running now and the state machine. The compressed candidate keeps the error-feedback
  // residual while dense runs (ef()), so a switch back resumes it: nothing is lost.
  std::unique_ptr<coll::Algorithm> alt;
  std::unique_ptr<coll::AutoSwitch> sw;
  std::unique_ptr<FigureReduction> figures;  // how the ranks agree on sw's figures
  std::string call_names[2];  // the call's name with dense, with the compressed candidate
  std::string candidate;      // the compressed candidate ("sra", "sparse-allgather")
  coll::Algorithm& ef() const {
    return sw && sw->current() == coll::AutoPick::Dense ? *alt : *algo;
  }
  void agree_on_switch();
  bool dense_now = false;  // stats.algorithm == "dense", tested on every run
  void set_algorithm(const std::string& name) {
    stats.algorithm = name;
    dense_now = name == "dense";
  }
  void record_run() {
    if (sw) sw->record(coll::recorded_run_time(sw->current(), stats.total_s));
  }
  PlanStats stats;
  std::uint64_t step = 0;
  bool in_flight = false;
  std::string broken;  // set when a run failed midway: the transport state is unknown
  double t0 = 0;
  std::uint64_t id = 0;          // this plan's id on its communicator (checked mode, messages)
  std::int64_t run_deadline = 0;  // monotonic ns: when the run in flight passes its deadline
  std::shared_ptr<Flight> flight = std::make_shared<Flight>();
  timeline::PlanTrack tl;  // this plan's track on the timeline (docs/timeline.md)
  // Device plans: pinned staging made at construction (collectives/staging.hpp), so a run
  // allocates nothing. Allreduce stages in place; allgather and reduce-scatter have both.
  std::string device_error;  // why this rank cannot run a device plan (agreed on in agree())
  int gpu = -1;  // device plans: the GPU they run on (detail::plan_device), current at each entry
  detail::PinnedStaging staging;

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
      // complete: keep everything MPI may touch (leaked quietly) rather than free it. An NCCL
      // transport's communicator is aborted first, so none of its kernels waits on.
      if (devpath) devpath->abort();
      flight->plan = nullptr;
      (void)algo.release();
      (void)alt.release();
      (void)t.release();
      (void)devpath.release();
      (void)tlocal.release();
      (void)tleaders.release();
      return;
    }
    flight->plan = nullptr;
    staging.release();
    algo.reset();
    alt.reset();
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
  bool predict_native() const;
  void run_device(const void* send, void* recv, void* stream, bool wait_result);
  // start() and start_on_stream(): null cuda_stream is the default stream.
  Request start(const void* send, void* recv, void* cuda_stream);
  void check_device_pointers(const void* send, void* recv) {
    if (cfg.count > 0 && (!detail::is_device_pointer(send) || !detail::is_device_pointer(recv)))
      fail(ErrorCode::InvalidArgument,
           std::string("device-memory plan: ") +
               (!detail::is_device_pointer(send) ? "send" : "recv") +
               " is not device memory (use a Memory::Host plan for host buffers)");
  }
  void make_device_powersgd(const coll::AlgoParams& p);
  void agree();
  void check_config();
  bool balance = false;  // SRA shards by measured speed (PlanConfig::balance_shards or env)
  void balance_shards(coll::AlgoParams& p);
  std::string arg_error;  // why this rank rejects the configuration (agreed on in agree())
  ErrorCode arg_code = ErrorCode::InvalidArgument;
  void choose();
  void decide_by_cost(std::string& name);
  // Inline, one test on the way to the run; which check failed is found out of line.
  void check_run(const void* send, void* recv) {
    if (c->finalized || (c->fault && c->fault->failed) || !broken.empty() || in_flight ||
        (cfg.count > 0 && (!send || !recv))) [[unlikely]]
      check_run_slow(send, recv);
  }
  [[gnu::cold]] void check_run_slow(const void* send, void* recv);
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
  // Blocking host runs of a dense float32 plan under the abort policy go through MPI's
  // blocking allreduce, as the communicator's blocking allreduce does: Open MPI's
  // non-blocking one is slower below a few MB (11 against 7 us at 8 B, 4 ranks here), and
  // "auto" choosing dense must cost what MPI_Allreduce costs.
  bool engine_blocking() const {
    return cfg.collective == PlanCollective::Allreduce && cfg.memory == Memory::Host &&
           cfg.dtype == DType::Float32 && !dgc && c->policy == OnTimeout::Abort;
  }
  // run_engine: the allreduce and the stats, untimed; run() calls it alone unless the
  // timeline records or auto's next decision needs this run's time (AutoSwitch::times): two
  // clock reads, and every call into another page of code, showed in an 8-byte
  // MPI_Allreduce's time at 3-4 ranks on 2 cores, and with every run timed (and agreements
  // at most 64 runs apart) auto ran at 0.96x of it at 4 KiB on 2 and 4 ranks, 0.98x with
  // neither (bench/results/auto-never-loses.md). Such runs leave total_s at 0 (plan.hpp).
  [[gnu::always_inline]] inline void run_engine(const void* send, void* recv);
  void run_engine_timed(const void* send, void* recv);  // run_engine, timed and traced
  bool engine_untimed() const {
    return (sw ? !sw->times(step) : cfg.count * sizeof(float) < coll::kAutoMinBytes) &&
           !timeline::active();
  }
  std::size_t engine_wire_bytes = 0;  // what run_engine sends (fixed: no division per run)
  bool poll();
  [[noreturn]] void run_failed(const Error& e);
  void drop_non_finite_residual() noexcept;
  void wait_blocking(OnTimeout policy);
  // The residual keyed by global element: this rank's slots added to sum; and the reverse,
  // a global sum shared out over the `holders` ranks with a full-range slot.
  void add_residual(std::vector<double>& sum) const;
  // takes: this rank's primary slots get their share (false: zero).
  void set_residual(const std::vector<double>& sum, int holders, bool takes = true);
  // Checkpoints (save_state, load_state): this rank's residual slots and velocity as host
  // copies, written back; the configuration a state file must match.
  coll::RankState local_state() const;
  void set_local_state(const coll::RankState& s);
  coll::StateFields state_fields() const;
  void check_not_finalized() const {
    if (c->finalized) fail(ErrorCode::Finalized, "plan used after its communicator's finalize()");
  }
  void check_not_in_flight(const char* what) const {
    if (in_flight) fail(ErrorCode::InvalidArgument, std::string(what) + " while a run is in flight");
  }
  // Checkpoints: none of the above, and no failed run.
  void check_idle(const char* what) const {
    check_not_finalized();
    check_not_in_flight(what);
    if (!broken.empty())
      fail(ErrorCode::InvalidArgument, std::string(what) + ": plan unusable after a failed run: " + broken);
  }
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
      {"GRADWIRE_DEVICE_STAGING", whole_staging_forced() ? 1u : 0u},
      {"balance_shards", balance ? 1u : 0u},
      {"GRADWIRE_OVERLAP", coll::overlap_setting()},  // collectives/overlap.hpp
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
  if (GRADWIRE_HAVE_CUDA && !c->cuda_present) {
    device_error = "device-memory plan: no CUDA device is visible on rank " +
                   std::to_string(c->rank) + "; use Memory::Host";
    return;
  }
  std::size_t in_bytes = cfg.count * dtype_size(cfg.dtype);
  const std::size_t out_bytes = cfg.collective == PlanCollective::Allgather
                                    ? in_bytes * static_cast<std::size_t>(c->size)
                                    : in_bytes;
  if (cfg.collective == PlanCollective::ReduceScatter) in_bytes *= static_cast<std::size_t>(c->size);
  // An algorithm that runs on the GPU needs no whole-buffer staging (choose() confirms it: a
  // predicted native choice stays native, whatever the cost model picks), nor does powersgd,
  // whose device form moves only its factors (make_device_powersgd).
  if (GRADWIRE_HAVE_CUDA && predict_native()) return;
  if (GRADWIRE_HAVE_CUDA && cfg.algorithm == "powersgd") return;
  device_error = staging.prepare(in_bytes, out_bytes,
                                 cfg.collective == PlanCollective::Allreduce, c->rank);
}

// Whether the algorithm choose() will make runs on a device executor, from the configuration
// alone (before agreement: a configuration choose() rejects predicts false).
bool Plan::Impl::predict_native() const {
  try {
    const CodecSpec s = parse_codec(cfg.codec);
    const coll::Selection sel{cfg.collective, cfg.dtype, cfg.op, s, cfg.memory};
    const bool multi_node = c->node_count > 1 && c->node_count < c->size;
    const std::string name =
        cfg.algorithm == "auto" ? coll::static_choice(sel, multi_node) : cfg.algorithm;
    const coll::AlgorithmEntry* e = coll::find_algorithm(cfg.collective, name);
    const coll::DgcOptions dopt{cfg.momentum, cfg.momentum_masking, cfg.clip_norm,
                                cfg.warmup_steps, cfg.warmup_density};
    return e && e->device_native && e->device_native(sel) && !dopt.any() &&  // DGC: host state
           !whole_staging_forced();
  } catch (const Error&) {
    return false;
  }
}

// The algorithm, from the agreed configuration and the (global) node layout: every rank
// chooses the same one.
void Plan::Impl::choose() {
  const std::string& a = cfg.algorithm;
  if (!coll::known_name(a)) {
    fail(ErrorCode::InvalidArgument,
         "unknown algorithm '" + a + "'; accepted: " + coll::accepted_names());
  }
  if (cfg.dtype != DType::Float32 && cfg.dtype != DType::Float16 && cfg.dtype != DType::BFloat16)
    fail(ErrorCode::Unsupported, "plans take float32, float16 or bfloat16");
  if (cfg.op != ReduceOp::Sum && cfg.op != ReduceOp::Avg)
    fail(ErrorCode::Unsupported, "plans reduce with sum or avg");
  const bool none = spec.kind == CodecKind::None;
  const coll::Selection sel{cfg.collective, cfg.dtype, cfg.op, spec, cfg.memory};
  const bool multi_node = c->node_count > 1 && c->node_count < c->size;
  std::string name = a == "auto" ? coll::static_choice(sel, multi_node) : a;
  const coll::AlgorithmEntry* entry = coll::find_algorithm(cfg.collective, name);
  if (!entry || (a != "auto" && !entry->nameable)) {
    // A name some other collective has.
    fail(ErrorCode::InvalidArgument, std::string(coll::collective_name(cfg.collective)) +
                                         " plans take algorithm " + coll::accepted_names(cfg.collective) +
                                         ", not '" + a + "'");
  }
  if (const coll::Refusal r = entry->supports(sel); !r.ok()) fail(r.code, r.why);
  if (a == "auto" && cfg.collective == PlanCollective::Allreduce && cfg.dtype == DType::Float32 &&
      (name == "sra" || name == "sparse-allgather")) {
    candidate = name;
    decide_by_cost(name);
    entry = coll::find_algorithm(cfg.collective, name);
  }
  set_algorithm(name);
  // Counted as the transport counts an allreduce: 2 (P-1)/P of the buffer.
  engine_wire_bytes = c->size > 1 ? 2 * (static_cast<std::size_t>(c->size) - 1) * cfg.count *
                                        dtype_size(cfg.dtype) / static_cast<std::size_t>(c->size)
                                  : 0;
  const bool device = cfg.memory == Memory::Device;
  const coll::DgcOptions dgc_options{cfg.momentum, cfg.momentum_masking, cfg.clip_norm,
                                     cfg.warmup_steps, cfg.warmup_density};
  // DGC keeps its velocity on the host: such plans stage the whole buffer.
  native = device && entry->device_native && entry->device_native(sel) && !dgc_options.any() &&
           !whole_staging_forced();
  // Host plans whose choice came from a trial keep deciding from their own runs; device plans
  // keep the creation choice (their staging is fixed by then), DGC plans too (their velocity
  // is the compressed algorithm's input).
  const bool adaptive = !candidate.empty() && stats.cost_source.rfind("trial:", 0) == 0 &&
                        !device && !dgc_options.any();
  stats.transport = device ? "mpi+staged-pinned" : "mpi";  // native: the agreed one, below
  stats.executor = native ? "cuda" : "host";
#if GRADWIRE_HAVE_CUDA && defined(MPIX_CUDA_AWARE_SUPPORT)
#if MPIX_CUDA_AWARE_SUPPORT
  if (device) stats.cuda_aware_mpi = MPIX_Query_cuda_support() == 1 ? 1 : 0;
#else
  if (device) stats.cuda_aware_mpi = 0;
#endif
#endif
  auto name_of_call = [&](const std::string& algorithm) {
    return "plan " + std::string(coll::collective_name(cfg.collective)) + " " + algorithm + " " +
           spec.to_string() + (!device ? "" : native ? " (device)" : " (device, staged)");
  };
  call_name = name_of_call(name);
  call.collective = call_name.c_str();
  if (adaptive) {
    call_names[0] = name_of_call("dense");
    call_names[1] = name_of_call(candidate);
  }

  coll::AlgoParams p;
  p.count = cfg.count;
  p.dtype = cfg.dtype;
  p.op = cfg.op;
  p.codec = spec;
  p.error_feedback = cfg.error_feedback && (!none || name == "powersgd");
  p.seed = cfg.seed;
  p.timeout_s = c->timeout_s;
  if (balance && (name == "sra" || (adaptive && candidate == "sra"))) balance_shards(p);
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

  const int ops = 4 * c->size + 8 + coll::overlap_ops(c->size, cfg.count);  // overlap.hpp
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
  if (native) {
    devpath = detail::make_device_path(*c, call, comm, ops);  // collective, agreed
    t = std::move(devpath->owned);
    p.x = devpath->x.get();
    stats.transport = devpath->transport;
  } else {
    t = std::make_unique<detail::MpiTransport>(comm, ops, *c, call);
  }
  coll::Build build{*t, p};
  build.powersgd_rank = cfg.powersgd_rank;
  build.shapes = &cfg.shapes;
  try {
    if (cfg.memory == Memory::Device && std::string(entry->name) == "powersgd") {
      make_device_powersgd(p);  // on the GPU (cuBLAS, cuSOLVER): algo, or every rank throws
      return;
    }
    if (entry->node_comms) {
      local = bounded_dup(c->local);
      tlocal = std::make_unique<detail::MpiTransport>(local, ops, *c, call);
      if (c->leaders != MPI_COMM_NULL) {
        leaders = bounded_dup(c->leaders);
        tleaders = std::make_unique<detail::MpiTransport>(leaders, ops, *c, call);
      }
      build.local = tlocal.get();
      build.leaders = tleaders.get();
      build.global_size = c->size;
    }
    algo = entry->make(build);
    if (adaptive) {
      alt = coll::find_algorithm(cfg.collective, name == "dense" ? candidate : "dense")->make(build);
      sw = std::make_unique<coll::AutoSwitch>(
          name == "dense" ? coll::AutoPick::Dense : coll::AutoPick::Compressed,
          stats.predicted_dense_s, stats.predicted_compressed_s, candidate);
      figures = std::make_unique<FigureReduction>();
      c->check_mpi(figures->make(), call, "MPI_Op_create");
      stats.decision = sw->reason() + " (" + stats.cost_source + ")";
    }
  } catch (const Error& e) {
    // Deterministic in the agreed configuration: every rank throws the same.
    fail(e.code(), e.what());
  }
}

// "auto" on a flat communicator: dense unless the cost model, from whole runs of both
// candidates timed here (or cached) and agreed, predicts that compression pays
// (collectives/cost_model.hpp, cost_trial.hpp).
void Plan::Impl::decide_by_cost(std::string& name) {
  detail::bounded_arrival(*c, call);  // the trial's blocking calls then meet no late peer
  detail::Armed guard(c->watch, c->timeout_s, call);
  if (cfg.count * sizeof(float) < coll::kAutoMinBytes) {  // nothing worth compressing
    name = "dense";
    if (cfg.count > 0) {
      stats.cost_source = "floor";
      stats.decision = "floor: below 4 KiB per rank, dense without a trial";
    }
    return;
  }
  auto check = [&](int rc, const char* what) { c->check_mpi(rc, call, what); };
  const std::size_t n = std::min(cfg.count, coll::kTrialMaxElements);
  const std::string what = name + "/" + spec.to_string() + "/ef" +
                           (cfg.error_feedback ? "1" : "0") + "/" +
                           (cfg.op == ReduceOp::Avg ? "avg" : "sum");
  const coll::TrialMeasurement m = coll::measure_trial(
      c->comm, what, n,
      [&] {
        // On a duplicate: the trial's messages meet nothing else.
        MPI_Comm tc = MPI_COMM_NULL;
        check(MPI_Comm_dup(c->comm, &tc), "MPI_Comm_dup");
        MPI_Comm_set_errhandler(tc, MPI_ERRORS_RETURN);
        struct Free {
          MPI_Comm& m;
          ~Free() { MPI_Comm_free(&m); }
        } free_tc{tc};
        detail::MpiTransport tt(tc, 4 * c->size + 8, *c, call);
        coll::AlgoParams q;
        q.count = n;
        q.op = cfg.op;
        q.codec = spec;
        q.error_feedback = cfg.error_feedback;
        q.seed = cfg.seed;
        // Small runs are cheap and noisy: more of them.
        const int reps = n <= (std::size_t{1} << 16) ? 9 : 5;
        return coll::time_candidates(
            tt, q, name, reps, [&] { check(MPI_Barrier(tc), "MPI_Barrier"); },
            [&](coll::Algorithm& a) {
              detail::poll_until_done(*c, call, c->policy, [&] { return a.progress(); });
            },
            engine_blocking() ? coll::DenseRun([&](const float* in, float* out, std::size_t k) {
              check(MPI_Allreduce(in, out, static_cast<int>(k), MPI_FLOAT, MPI_SUM, tc),
                    "MPI_Allreduce");
            })
                              : coll::DenseRun());
      },
      check);
  const coll::CostDecision d =
      coll::decide_from_trial(m.dense_s, m.compressed_s, n, name, cfg.count);
  name = d.algorithm;
  stats.predicted_s = d.predicted_s;
  stats.predicted_dense_s = d.dense_s;
  stats.predicted_compressed_s = d.compressed_s;
  stats.cost_source = m.source;
  stats.decision = "trial: " + name + " (" + m.source + ")";
}

// Before a run at an agreed step: every rank's recent run times, agreed (AutoSwitch::combine),
// decide whether to switch; the decision is a function of agreed figures only, so every rank
// makes the same one.
void Plan::Impl::agree_on_switch() {
  std::vector<double> v(coll::AutoSwitch::kFigures);
  sw->local(v.data(), c->size);
  const double t_start = now_s();
  const MPI_Comm cc = comm;
  const FigureReduction& f = *figures;
  const std::vector<double> agreed = detail::bounded_of(
      *c, call, "MPI_Iallreduce", v, [cc, &f](void* b, MPI_Request* r) {
        return MPI_Iallreduce(MPI_IN_PLACE, b, 1, f.record(), f.op(), cc, r);
      });
  sw->set_check_cost(now_s() - t_start);
  if (sw->decide(agreed.data(), step)) {
    std::swap(algo, alt);
    const bool compressed = sw->current() == coll::AutoPick::Compressed;
    set_algorithm(compressed ? candidate : "dense");
    call.collective = call_names[compressed ? 1 : 0].c_str();
  }
  stats.decision = sw->reason();
  stats.switches = sw->switches();
  stats.measured_dense_s = sw->measured_s(coll::AutoPick::Dense);
  stats.measured_compressed_s = sw->measured_s(coll::AutoPick::Compressed);
}

// Uneven ranks: every rank's codec speed, measured here and gathered (identical everywhere),
// sizes the owned shards (collectives/shards.hpp); nearly equal speeds keep the even split.
void Plan::Impl::balance_shards(coll::AlgoParams& p) {
  detail::bounded_arrival(*c, call);
  detail::Armed guard(c->watch, c->timeout_s, call);
  const coll::RankCosts rc = coll::gather_rank_costs(
      c->comm, Codec(spec), [&](int rc, const char* what) { c->check_mpi(rc, call, what); });
  p.shard_weights = coll::shard_weights(rc);
  stats.shard_weights = p.shard_weights;
}

void Plan::Impl::check_run_slow(const void* send, void* recv) {
  check_not_finalized();
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
  if (devpath) devpath->zero_counters();
  if (tlocal) tlocal->sent_bytes = 0;
  if (tleaders) tleaders->sent_bytes = 0;
  in_flight = true;
  run_deadline = detail::monotonic_ns() + detail::timeout_ns(c->timeout_s);
  c->board.enter(detail::ProgressBoard::PlanRun);
  try {
    // DGC: clipping and the velocity, before any codec (the plan's own buffer goes out).
    if (dgc && cfg.count > 0) send = dgc->prepare(static_cast<const float*>(send));
    timeline::OnTrack on(tl.track());
    algo->begin(send, recv, step);
  } catch (const Error& e) {
    in_flight = false;
    run_failed(e);
  }
}

void Plan::Impl::run_engine(const void* send, void* recv) {
  c->board.enter(detail::ProgressBoard::PlanRun);
  {
    detail::Armed guard(c->watch, c->timeout_s, call);
    c->check_mpi(MPI_Allreduce(send == recv ? MPI_IN_PLACE : send, recv,
                               static_cast<int>(cfg.count), MPI_FLOAT, MPI_SUM, comm),
                 call, "MPI_Allreduce");
  }
  if (cfg.op == ReduceOp::Avg) coll::scale(static_cast<float*>(recv), cfg.count, c->size);
  ++step;
  stats.logical_bytes = cfg.count * sizeof(float);
  stats.wire_bytes = engine_wire_bytes;
  stats.encode_s = stats.transfer_s = stats.decode_s = stats.total_s = 0;
}

void Plan::Impl::run_engine_timed(const void* send, void* recv) {
  timeline::OnTrack on(tl.track());
  t0 = now_s();
  {
    timeline::Span wait("exchange", cfg.count * sizeof(float));
    run_engine(send, recv);
  }
  stats.total_s = now_s() - t0;
  stats.transfer_s = stats.total_s;
  tl.run_done(t0, t0 + stats.total_s, stats.wire_bytes, step - 1);
}

// A run that failed on this rank: the plan is unusable; the other ranks' timeout messages
// name this rank (progress board); the message names the rank, the plan and its step.
void Plan::Impl::run_failed(const Error& e) {
  c->board.failed(detail::ProgressBoard::PlanRun,
                  std::string(e.what()).find("non-finite") != std::string::npos);
  const std::string cause =
      "plan " + std::to_string(id) + ", step " + std::to_string(step) + ": " + e.what();
  timeline::instant("error", cause);
  broken = cause;
  fail(e.code(), cause);
}

bool Plan::Impl::poll() {
  if (!in_flight) return true;
  bool done = false;
  timeline::OnTrack on(tl.track());
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
  if (devpath) stats.pcie_bytes = devpath->pcie_bytes();
  stats.encode_s = algo->encode_s;  // device executors: the time to enqueue the kernels
  stats.decode_s = algo->decode_s;
  stats.total_s = now_s() - t0;
  stats.transfer_s = std::max(0.0, stats.total_s - stats.encode_s - stats.decode_s);
  tl.run_done(t0, t0 + stats.total_s, stats.wire_bytes, step - 1);
  return true;
}

void Plan::Impl::wait_blocking(OnTimeout policy) {
  timeline::OnTrack on(tl.track());  // a timeout's mark on this plan's track
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
  if (p.cfg.memory == Memory::Device) p.gpu = detail::plan_device(*p.c);
  const detail::CurrentDevice on(p.gpu);  // what the plan makes belongs to its GPU
  if (p.arg_error.empty()) p.prepare_device();
  p.agree();
  p.choose();
  p.flight->plan = impl_.get();
  p.tl.open(p.id, p.call_name.substr(5));  // "allreduce sra q8" (call_name less "plan ")
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
  try {  // the environment: GRADWIRE_BALANCE_SHARDS, GRADWIRE_SLOW_RANK
    balance = coll::balance_shards_setting(cfg.balance_shards);
    (void)coll::codec_slowdown();
  } catch (const Error& e) {
    reject(e.code(), e.what());
  }
}

void Plan::Impl::drop_non_finite_residual() noexcept {
  // One NaN or Inf gradient must not poison every later step through error feedback: a
  // non-finite residual element is reset to 0 (the step that produced it already carried the
  // non-finite value in its own result). While auto runs dense, no run writes the residual
  // (the compressed candidate keeps it): a scan would read the whole buffer for nothing, which
  // cost a dense auto plan 5-15 % of a training step (bench/results/torch-peers.md).
  if (sw && sw->current() == coll::AutoPick::Dense) return;
  for (auto& sl : ef().slots) {
    // Device memory: the algorithm resets it at the start of the next run, on that run's
    // stream (a kernel here could race with a next run on another stream); reads of the
    // residual (add_residual) skip non-finite values meanwhile.
    if (sl.x) continue;
    // The exponent bits all set (Inf or NaN), tested on the bits: a loop the compiler
    // vectorises, where std::isfinite's is not.
    std::uint32_t bad = 0;
    for (std::size_t i = 0; i < sl.length; ++i) {
      std::uint32_t bits;
      std::memcpy(&bits, sl.data + i, sizeof bits);
      bad |= static_cast<std::uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
    }
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
  if (p.sw && p.sw->check_due(p.step)) p.agree_on_switch();
  if (p.dense_now && p.engine_blocking() && p.cfg.count > 0) {
    if (p.engine_untimed()) return p.run_engine(send, recv);  // nothing to record
    p.run_engine_timed(send, recv);
  } else {
    p.begin(send, recv);
    p.wait_blocking(p.c->policy);
  }
  // Blocking runs only: a request's time includes whatever the caller did before waiting.
  p.record_run();
}

Request Plan::start(const void* send, void* recv) { return impl_->start(send, recv, nullptr); }

Request Plan::start_on_stream(const void* send, void* recv, void* cuda_stream) {
  Impl& p = *impl_;
  if (p.cfg.memory != Memory::Device) {
    p.fail(ErrorCode::InvalidArgument,
           "start_on_stream takes a plan made with Memory::Device; this one is for host memory "
           "(use start)");
  }
  return p.start(send, recv, cuda_stream);
}

Request Plan::Impl::start(const void* send, void* recv, void* cuda_stream) {
  Impl& p = *this;
  if (p.cfg.memory == Memory::Device && !p.native) {
    p.fail(ErrorCode::Unsupported,
           "start: non-blocking requests are not implemented for device-memory plans staged "
           "through host memory; use run_on_stream (or run)");
  }
  p.check_run(send, recv);
  const detail::CurrentDevice on(p.gpu);
  if (p.native) {
    p.check_device_pointers(send, recv);
    p.devpath->set_stream(cuda_stream);  // null: the default stream
  }
  p.check_agreement();
  if (p.sw && p.sw->check_due(p.step)) p.agree_on_switch();
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
  if (!GRADWIRE_HAVE_CUDA)
    fail(ErrorCode::Unsupported, "device-memory plan: gradwire was built without CUDA");
  check_run(send, recv);
  const detail::CurrentDevice on(gpu);
  if (!on.ok()) fail(ErrorCode::Cuda, on.error());
  check_device_pointers(send, recv);
  if (algo->on_device()) {  // powersgd on the GPU: no staging (algorithms/powersgd_device.hpp)
    const double t_start = now_s();
    algo->set_stream(stream);
    check_agreement();
    begin(send, recv);
    wait_blocking(c->policy);
    try {
      if (wait_result) detail::wait_stream(stream, *c, call);
    } catch (const Error& e) {
      broken = e.what();
      throw;
    }
    stats.stage_s = 0;
    stats.total_s = now_s() - t_start;
    return;
  }
  if (native) {
    // On the GPU: kernels and transfers on the caller's stream; the run completes when the
    // stream has done them (the executor's finish), without a device-wide sync.
    devpath->set_stream(stream);
    check_agreement();
    begin(send, recv);
    wait_blocking(c->policy);
    return;
  }
  if (!staging.in() && staging.in_bytes() > 0)
    fail(ErrorCode::Internal, "device-memory plan: staging was not prepared");
  const double ts = now_s();
  double staged = 0;
  try {
    staging.down(send, staging.in_bytes(), stream, *c, call);
    staged = now_s() - ts;
  } catch (const Error& e) {
    broken = e.what();
    throw;
  }
  begin(staging.in(), staging.out());
  wait_blocking(c->policy);
  const double t_back = now_s();
  try {
    staging.up(recv, staging.out_bytes(), stream, wait_result, *c, call);
  } catch (const Error& e) {
    broken = e.what();
    throw;
  }
  const double t_end = now_s();
  stats.pcie_bytes = staging.in_bytes() + staging.out_bytes();
  stats.stage_s = staged + (t_end - t_back);
  stats.total_s = t_end - ts;
}

const PlanStats& Plan::stats() const { return impl_->stats; }
void Plan::set_label(const std::string& label) { impl_->tl.label(label); }
const PlanConfig& Plan::config() const { return impl_->cfg; }
std::uint64_t Plan::step() const { return impl_->step; }

void Plan::set_step(std::uint64_t step) {
  Impl& p = *impl_;
  p.check_not_in_flight("set_step");
  p.step = step;
}

void Plan::reset_residual() {
  Impl& p = *impl_;
  p.check_not_in_flight("reset_residual");
  for (auto& s : p.ef().slots) {
    if (s.x) {
      s.x->zero(s.data, s.length * sizeof(float));
      s.x->finish(p.c->timeout_s);
    } else {
      std::fill(s.data, s.data + s.length, 0.0f);
    }
  }
  p.ef().slots_to_residual();
  if (p.dgc) p.dgc->reset();
}

// The file's format: collectives/residual_file.hpp. Rank 0 writes the sum over ranks.
void Plan::save_residual(const std::string& path) const {
  Impl& p = *impl_;
  p.check_not_finalized();
  p.check_not_in_flight("save_residual");
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
  if (root) ok[0] = coll::write_residual_file(path, p.cfg.collective, sum) ? 1 : 0;
  ok = detail::bounded_of(*p.c, p.call, "MPI_Ibcast", ok, [cc](void* b, MPI_Request* r) {
    return MPI_Ibcast(b, 1, MPI_INT, 0, cc, r);
  });
  if (!ok[0]) p.fail(ErrorCode::InvalidArgument, "save_residual: cannot write '" + path + "'");
}

void Plan::load_residual(const std::string& path) {
  Impl& p = *impl_;
  p.check_not_finalized();
  p.check_not_in_flight("load_residual");
  const std::size_t n = p.global_elements();
  std::vector<double> sum(n, 0.0);
  std::vector<char> error(256, '\0');
  int has = 0;
  for (const auto& s : p.ef().slots) has = has || s.primary;
  if (p.c->rank == 0) {
    const std::string e = coll::read_residual_file(path, p.cfg.collective, n, sum);
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
void Plan::carry_residual(const Plan& from) { carry_residual(&from); }

// Joining ranks (from == nullptr) add nothing and, where every holder has the whole range
// (allreduce, reduce-scatter), take no share: the survivors' total stays with them, the
// joiners start at zero. Allgather ranges have one holder each, who takes it, joiner or not.
void Plan::carry_residual(const Plan* from) {
  Impl& p = *impl_;
  p.check_not_in_flight("carry_residual");
  if (from && from->impl_->in_flight && from->impl_->broken.empty())
    p.fail(ErrorCode::InvalidArgument, "carry_residual from a plan whose run is in flight");
  const std::size_t n = p.global_elements();
  std::vector<double> sum(n + 1, 0.0);  // the last entry: ranks whose source does not fit
  if (from) {
    const Impl& q = *from->impl_;
    if (q.cfg.collective != p.cfg.collective || q.global_elements() != n) {
      sum[n] = 1;
    } else {
      q.add_residual(sum);
    }
  }
  int primary = 0;
  for (const auto& s : p.ef().slots) primary = primary || s.primary;
  const bool takes = from != nullptr || p.cfg.collective == PlanCollective::Allgather;
  const MPI_Comm cc = p.c->comm;
  sum = detail::bounded_of(*p.c, p.call, "MPI_Iallreduce", sum, [cc, n](void* b, MPI_Request* r) {
    return MPI_Iallreduce(MPI_IN_PLACE, b, static_cast<int>(n + 1), MPI_DOUBLE, MPI_SUM, cc, r);
  });
  // [0]: holders that take a share, [1]: holders at all.
  const std::vector<int> holders = detail::bounded_of(
      *p.c, p.call, "MPI_Iallreduce", std::vector<int>{primary && takes, primary},
      [cc](void* b, MPI_Request* r) {
        return MPI_Iallreduce(MPI_IN_PLACE, b, 2, MPI_INT, MPI_SUM, cc, r);
      });
  if (sum[n] != 0) {
    const Impl& q = *from->impl_;
    p.fail(ErrorCode::InvalidArgument,
           "carry_residual: the source plan covers " + std::to_string(q.global_elements()) +
               " global elements of an " + coll::collective_name(q.cfg.collective) +
               " plan on some rank; this one " + std::to_string(n) + " of an " +
               coll::collective_name(p.cfg.collective) + " plan");
  }
  sum.pop_back();
  // Only joiners hold a range (every survivor's plan holds none): they take it.
  if (holders[0] == 0) {
    p.set_residual(sum, holders[1], true);
  } else {
    p.set_residual(sum, holders[0], takes);
  }
}

coll::RankState Plan::Impl::local_state() const {
  ef().residual_to_slots();
  coll::RankState s;
  for (const auto& sl : ef().slots) {
    coll::RankState::Slot out;
    out.offset = sl.offset;
    out.data.resize(sl.length);
    if (sl.x) {
      sl.x->to_host(out.data.data(), sl.data, sl.length * sizeof(float));
    } else if (sl.length > 0) {
      std::memcpy(out.data.data(), sl.data, sl.length * sizeof(float));
    }
    // As add_residual: a non-finite element is dropped (device memory resets it next run).
    for (float& v : out.data)
      if (!std::isfinite(v)) v = 0.0f;
    s.slots.push_back(std::move(out));
  }
  if (dgc) s.velocity = dgc->velocity();
  return s;
}

void Plan::Impl::set_local_state(const coll::RankState& s) {
  auto& slots = ef().slots;
  for (std::size_t i = 0; i < slots.size(); ++i) {
    auto& sl = slots[i];
    const std::vector<float>& d = s.slots[i].data;
    if (sl.x) {
      sl.x->from_host(sl.data, d.data(), sl.length * sizeof(float));
    } else if (sl.length > 0) {
      std::memcpy(sl.data, d.data(), sl.length * sizeof(float));
    }
  }
  ef().slots_to_residual();
  if (dgc) dgc->set_velocity(s.velocity);
}

coll::StateFields Plan::Impl::state_fields() const {
  coll::StateFields f = {
      {"dtype", std::string(dtype_name(cfg.dtype))},
      {"codec", spec.to_string()},
      {"algorithm", cfg.algorithm},
      {"error_feedback", cfg.error_feedback ? "true" : "false"},
      {"momentum", std::to_string(cfg.momentum)},
  };
  if (cfg.algorithm == "powersgd") {
    std::string shapes;
    for (const MatrixShape& m : cfg.shapes) {
      if (!shapes.empty()) shapes += ",";
      shapes += std::to_string(m.rows) + "x" + std::to_string(m.cols);
    }
    f.emplace_back("powersgd_rank", std::to_string(cfg.powersgd_rank));
    f.emplace_back("shapes", shapes.empty() ? "(none)" : shapes);
  }
  return f;
}

// Rank 0 gathers every rank's own state (point to point, any size) and writes the file with the
// step and the warm start, which are the same on every rank.
void Plan::save_state(const std::string& path) const {
  Impl& p = *impl_;
  p.check_idle("save_state");
  const detail::CurrentDevice on(p.gpu);  // device residuals and Q are read on their GPU
  const std::vector<char> mine = coll::encode_rank_state(p.local_state());
  const bool root = p.c->rank == 0;
  std::vector<int> ok{1};
  if (root) {
    coll::StateFile f;
    f.collective = p.cfg.collective;
    f.elements = p.global_elements();
    f.step = p.step;
    f.fields = p.state_fields();
    f.warm_start = p.ef().warm_start();
    f.ranks.resize(static_cast<std::size_t>(p.c->size));
    f.ranks[0] = mine;
    for (int r = 1; r < p.c->size; ++r)
      f.ranks[static_cast<std::size_t>(r)] = detail::bounded_recv(*p.c, p.call, p.comm, r);
    ok[0] = coll::write_state_file(path, f) ? 1 : 0;
  } else {
    detail::bounded_send(*p.c, p.call, p.comm, 0, mine);
  }
  const MPI_Comm cc = p.c->comm;
  ok = detail::bounded_of(*p.c, p.call, "MPI_Ibcast", ok, [cc](void* b, MPI_Request* r) {
    return MPI_Ibcast(b, 1, MPI_INT, 0, cc, r);
  });
  if (!ok[0]) p.fail(ErrorCode::InvalidArgument, "save_state: cannot write '" + path + "'");
}

// Rank 0 reads and checks the file and tells every rank the verdict. Exact where the rank count
// and every rank's slot layout are the saved ones: each rank gets its own state back. Else the
// residual and velocity totals, by global element, are shared out.
void Plan::load_state(const std::string& path) {
  Impl& p = *impl_;
  p.check_idle("load_state");
  const detail::CurrentDevice on(p.gpu);
  const MPI_Comm cc = p.c->comm;
  const bool root = p.c->rank == 0;
  const std::size_t n = p.global_elements();
  const coll::RankState here = p.local_state();
  std::vector<std::uint64_t> layouts = detail::bounded_of(
      *p.c, p.call, "MPI_Igather",
      std::vector<std::uint64_t>(static_cast<std::size_t>(p.c->size), coll::layout_hash(here)),
      [cc, root](void* b, MPI_Request* r) {
        return MPI_Igather(root ? MPI_IN_PLACE : b, 1, MPI_UINT64_T, b, 1, MPI_UINT64_T, 0, cc, r);
      });
  coll::StateFile file;
  std::string error;
  bool exact = false;
  std::vector<coll::RankState> saved;
  if (root) {
    coll::StateFile want;
    want.collective = p.cfg.collective;
    want.elements = n;
    want.fields = p.state_fields();
    want.warm_start = p.ef().warm_start();
    error = coll::read_state_file(path, want, file);
    saved.resize(file.ranks.size());
    for (std::size_t r = 0; r < file.ranks.size() && error.empty(); ++r) {
      const std::string e = coll::decode_rank_state(file.ranks[r], n, saved[r]);
      if (!e.empty()) error = "'" + path + "' holds, for rank " + std::to_string(r) + ", " + e;
    }
    exact = error.empty() && saved.size() == static_cast<std::size_t>(p.c->size);
    for (std::size_t r = 0; exact && r < saved.size(); ++r)
      exact = coll::layout_hash(saved[r]) == layouts[r];
  }
  // The verdict: the error (empty: none), exact or not, the step, the warm start's size.
  std::vector<char> head(1024 + 24, '\0');
  if (root) {
    std::snprintf(head.data(), 1024, "%s", error.c_str());
    const std::uint64_t v[3] = {exact ? 1u : 0u, file.step, file.warm_start.size()};
    std::memcpy(head.data() + 1024, v, sizeof v);
  }
  head = detail::bounded_of(*p.c, p.call, "MPI_Ibcast", head, [cc](void* b, MPI_Request* r) {
    return MPI_Ibcast(b, 1024 + 24, MPI_CHAR, 0, cc, r);
  });
  if (head[0] != 0) p.fail(ErrorCode::InvalidArgument, std::string("load_state: ") + head.data());
  std::uint64_t v[3];
  std::memcpy(v, head.data() + 1024, sizeof v);
  exact = v[0] != 0;
  std::vector<float> warm = root ? file.warm_start : std::vector<float>(v[2]);
  warm = detail::bounded_of(*p.c, p.call, "MPI_Ibcast", warm, [cc, k = v[2]](void* b, MPI_Request* r) {
    return MPI_Ibcast(b, static_cast<int>(k), MPI_FLOAT, 0, cc, r);
  });
  if (exact) {
    coll::RankState mine;
    if (root) {
      for (int r = 1; r < p.c->size; ++r)
        detail::bounded_send(*p.c, p.call, p.comm, r, file.ranks[static_cast<std::size_t>(r)]);
      mine = std::move(saved[0]);
    } else {
      // Rank 0 checked these bytes; decoding them again only restores the structure.
      (void)coll::decode_rank_state(detail::bounded_recv(*p.c, p.call, p.comm, 0), n, mine);
    }
    p.set_local_state(mine);
  } else {
    // Residual and velocity totals by global element (the velocity after the residual).
    const bool velocity = !here.velocity.empty();
    const std::size_t len = velocity ? 2 * n : n;
    std::vector<double> sum(len, 0.0);
    for (const coll::RankState& s : saved) {
      for (const auto& sl : s.slots)
        for (std::size_t i = 0; i < sl.data.size(); ++i) sum[sl.offset + i] += sl.data[i];
      if (velocity)
        for (std::size_t i = 0; i < s.velocity.size(); ++i) sum[n + i] += s.velocity[i];
    }
    sum = detail::bounded_of(*p.c, p.call, "MPI_Ibcast", sum, [cc, len](void* b, MPI_Request* r) {
      return MPI_Ibcast(b, static_cast<int>(len), MPI_DOUBLE, 0, cc, r);
    });
    int has = 0;
    for (const auto& s : p.ef().slots) has = has || s.primary;
    const int holders =
        detail::bounded_of(*p.c, p.call, "MPI_Iallreduce", std::vector<int>{has},
                           [cc](void* b, MPI_Request* r) {
                             return MPI_Iallreduce(MPI_IN_PLACE, b, 1, MPI_INT, MPI_SUM, cc, r);
                           })[0];
    if (velocity) {
      // Every rank holds a full-range velocity: each takes an even share of the total.
      std::vector<float> u(n);
      for (std::size_t i = 0; i < n; ++i)
        u[i] = static_cast<float>(sum[n + i] / static_cast<double>(p.c->size));
      p.dgc->set_velocity(u);
      sum.resize(n);
    }
    p.set_residual(sum, holders);
  }
  p.ef().set_warm_start(warm);
  p.step = v[1];
}

void Plan::Impl::add_residual(std::vector<double>& sum) const {
  ef().residual_to_slots();
  std::vector<float> host;
  for (const auto& s : ef().slots) {
    const float* d = s.data;
    if (s.x) {  // device memory: read through the executor (not a hot path)
      host.resize(s.length);
      s.x->to_host(host.data(), s.data, s.length * sizeof(float));
      d = host.data();
    }
    for (std::size_t i = 0; i < s.length; ++i)
      if (std::isfinite(d[i])) sum[s.offset + i] += d[i];  // (device: not yet reset, above)
  }
}

void Plan::Impl::set_residual(const std::vector<double>& sum, int holders, bool takes) {
  Impl& p = *this;
  // Allreduce, reduce-scatter: only the sum over ranks reaches the result, so the total is
  // shared evenly by the ranks holding a full-range residual. Allgather: each element has one
  // holder.
  const double share =
      p.cfg.collective != PlanCollective::Allgather && holders > 0 ? 1.0 / holders : 1.0;
  std::vector<float> host;
  for (auto& s : p.ef().slots) {
    host.resize(s.length);
    float* d = s.x ? host.data() : s.data;
    for (std::size_t i = 0; i < s.length; ++i)
      d[i] = s.primary && takes ? static_cast<float>(sum[s.offset + i] * share) : 0.0f;
    if (s.x) s.x->from_host(s.data, host.data(), s.length * sizeof(float));
  }
  p.ef().slots_to_residual();
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
