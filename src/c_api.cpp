// The C ABI (include/gradwire/gradwire.h) over the C++ Communicator: argument checks that
// only C callers need (NULL handles and out-pointers), exception-to-status translation, and
// the thread-local last-error message. Validation of buffers, counts, dtypes and ops stays
// in the C++ layer so both APIs reject the same things with the same words.
#include "gradwire/gradwire.h"

#include <exception>
#include <memory>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "gradwire/communicator.hpp"
#include "gradwire/config.hpp"
#include "gradwire/error.hpp"
#include "gradwire/plan.hpp"
#include "gradwire/types.hpp"

struct gw_comm_s {
  gradwire::Communicator comm;
  bool finalized = false;  // by gw_comm_finalize, so that gw_comm_destroy does not repeat it
};
struct gw_request_s {
  gradwire::Request req;
};
struct gw_plan_s {
  gradwire::Plan plan;
};

namespace {

using gradwire::ErrorCode;

// The header promises these equalities; a renumbering on either side fails the build.
static_assert(GW_INVALID_ARGUMENT == static_cast<int>(ErrorCode::InvalidArgument));
static_assert(GW_UNSUPPORTED == static_cast<int>(ErrorCode::Unsupported));
static_assert(GW_TIMEOUT == static_cast<int>(ErrorCode::Timeout));
static_assert(GW_FINALIZED == static_cast<int>(ErrorCode::Finalized));
static_assert(GW_MISMATCH == static_cast<int>(ErrorCode::Mismatch));
static_assert(GW_MPI_ERROR == static_cast<int>(ErrorCode::Mpi));
static_assert(GW_NCCL_ERROR == static_cast<int>(ErrorCode::Nccl));
static_assert(GW_CUDA_ERROR == static_cast<int>(ErrorCode::Cuda));
static_assert(GW_WIRE_FORMAT == static_cast<int>(ErrorCode::WireFormat));
static_assert(GW_INTERNAL == static_cast<int>(ErrorCode::Internal));
static_assert(GW_PEER_FAILED == static_cast<int>(ErrorCode::PeerFailed));
static_assert(GW_FLOAT32 == static_cast<int>(gradwire::DType::Float32));
static_assert(GW_FLOAT64 == static_cast<int>(gradwire::DType::Float64));
static_assert(GW_FLOAT16 == static_cast<int>(gradwire::DType::Float16));
static_assert(GW_BFLOAT16 == static_cast<int>(gradwire::DType::BFloat16));
static_assert(GW_INT32 == static_cast<int>(gradwire::DType::Int32));
static_assert(GW_INT64 == static_cast<int>(gradwire::DType::Int64));
static_assert(GW_UINT8 == static_cast<int>(gradwire::DType::UInt8));
static_assert(GW_SUM == static_cast<int>(gradwire::ReduceOp::Sum));
static_assert(GW_AVG == static_cast<int>(gradwire::ReduceOp::Avg));
static_assert(GW_MIN == static_cast<int>(gradwire::ReduceOp::Min));
static_assert(GW_MAX == static_cast<int>(gradwire::ReduceOp::Max));
static_assert(GW_PROD == static_cast<int>(gradwire::ReduceOp::Prod));

thread_local std::string t_message;
thread_local const char* t_last = "";

// Records "<function>: <what>" as this thread's last error. Never throws: if even the
// message cannot be allocated, a static text stands in for it.
gw_status_t fail(gw_status_t status, const char* function, const char* what) noexcept {
  try {
    t_message.assign(function).append(": ").append(what);
    t_last = t_message.c_str();
  } catch (...) {
    t_last = "gradwire: out of memory while recording an error message";
  }
  return status;
}

// Thrown by the checks below; carries the status that fail() records.
struct CError {
  gw_status_t status;
  const char* what;
};

// Runs body, turning every exception into a status and a message: the C boundary
// must never see one (unwinding through C frames is undefined behaviour).
template <class Body>
gw_status_t guarded(const char* function, Body&& body) noexcept {
  try {
    std::forward<Body>(body)();
    return GW_SUCCESS;
  } catch (const CError& e) {
    return fail(e.status, function, e.what);
  } catch (const gradwire::Error& e) {
    return fail(static_cast<gw_status_t>(e.code()), function, e.what());
  } catch (const std::bad_alloc&) {
    return fail(GW_OUT_OF_MEMORY, function, "out of memory");
  } catch (const std::exception& e) {
    return fail(GW_INTERNAL, function, e.what());
  } catch (...) {
    return fail(GW_INTERNAL, function, "unknown exception");
  }
}

template <class T>
T& need(T* p, const char* what) {
  if (p == nullptr) throw CError{GW_INVALID_ARGUMENT, what};
  return *p;
}

gradwire::Communicator& comm_of(gw_comm_t c) {
  return need(c, "communicator handle is NULL").comm;
}

gradwire::DType dt(gw_dtype_t t) { return static_cast<gradwire::DType>(t); }
gradwire::ReduceOp rop(gw_op_t op) { return static_cast<gradwire::ReduceOp>(op); }

// Starts a non-blocking collective and hands its request to the caller. *req is NULL
// unless the call succeeds, so a failed start never leaves a handle to free.
template <class Start>
void start(gw_request_t* req, Start&& s) {
  need(req, "request out-pointer is NULL") = nullptr;
  auto handle = new gw_request_s{std::forward<Start>(s)()};
  *req = handle;
}

}  // namespace

extern "C" {

const char* gw_last_error(void) { return t_last; }

const char* gw_status_string(gw_status_t status) {
  if (status == GW_SUCCESS) return "success";
  if (status == GW_OUT_OF_MEMORY) return "out of memory";
  if ((status >= GW_INVALID_ARGUMENT && status <= GW_INTERNAL) || status == GW_PEER_FAILED)
    return gradwire::error_code_name(static_cast<ErrorCode>(status));
  return "unknown status";
}

gw_status_t gw_version(int* major, int* minor, int* patch) {
  return guarded("gw_version", [&] {
    need(major, "major is NULL") = GRADWIRE_VERSION_MAJOR;
    need(minor, "minor is NULL") = GRADWIRE_VERSION_MINOR;
    need(patch, "patch is NULL") = GRADWIRE_VERSION_PATCH;
  });
}

const char* gw_version_string(void) { return GRADWIRE_VERSION_STRING; }

gw_status_t gw_comm_create(MPI_Comm comm, gw_comm_t* out) {
  return guarded("gw_comm_create", [&] {
    need(out, "communicator out-pointer is NULL") = nullptr;
    *out = new gw_comm_s{gradwire::Communicator(comm)};
  });
}

gw_status_t gw_comm_create_timeline(MPI_Comm comm, const char* timeline_path, gw_comm_t* out) {
  return guarded("gw_comm_create_timeline", [&] {
    need(out, "communicator out-pointer is NULL") = nullptr;
    gradwire::Options o;
    (void)need(timeline_path, "timeline path is NULL");
    o.timeline = timeline_path;
    if (o.timeline.empty()) throw CError{GW_INVALID_ARGUMENT, "timeline path is empty"};
    *out = new gw_comm_s{gradwire::Communicator(comm, o)};
  });
}

gw_status_t gw_comm_create_f(MPI_Fint comm, gw_comm_t* out) {
  return guarded("gw_comm_create_f", [&] {
    need(out, "communicator out-pointer is NULL") = nullptr;
    *out = new gw_comm_s{gradwire::Communicator(MPI_Comm_f2c(comm))};
  });
}

gw_status_t gw_comm_split(gw_comm_t comm, int color, int key, gw_comm_t* out) {
  return guarded("gw_comm_split", [&] {
    auto& c = comm_of(comm);
    need(out, "communicator out-pointer is NULL") = nullptr;
    *out = new gw_comm_s{c.split(color, key)};
  });
}

gw_status_t gw_comm_shrink(gw_comm_t comm, gw_comm_t* out) {
  return guarded("gw_comm_shrink", [&] {
    auto& c = comm_of(comm);
    need(out, "communicator out-pointer is NULL") = nullptr;
    *out = new gw_comm_s{c.shrink()};
  });
}

gw_status_t gw_comm_finalize(gw_comm_t comm) {
  return guarded("gw_comm_finalize", [&] {
    comm_of(comm).finalize();
    comm->finalized = true;
  });
}

gw_status_t gw_comm_destroy(gw_comm_t* comm) {
  return guarded("gw_comm_destroy", [&] {
    // The handle is freed even when finalize fails: the caller can do nothing else with it.
    std::unique_ptr<gw_comm_s> c(std::exchange(need(comm, "communicator pointer is NULL"),
                                               nullptr));
    // Finalize here rather than in the destructor so that its errors reach the caller.
    if (c != nullptr && !c->finalized) c->comm.finalize();
  });
}

#define GW_GETTER(name, type, expr)                          \
  gw_status_t name(gw_comm_t comm, type* value) {            \
    return guarded(#name, [&] {                              \
      auto& c = comm_of(comm);                               \
      need(value, "out-pointer is NULL") = (expr);           \
    });                                                      \
  }
GW_GETTER(gw_comm_rank, int, c.rank())
GW_GETTER(gw_comm_size, int, c.size())
GW_GETTER(gw_comm_local_rank, int, c.local_rank())
GW_GETTER(gw_comm_local_size, int, c.local_size())
GW_GETTER(gw_comm_node_count, int, c.node_count())
GW_GETTER(gw_comm_rendezvous_seconds, double, c.rendezvous_seconds())
#undef GW_GETTER

gw_status_t gw_comm_set_on_timeout(gw_comm_t comm, gw_on_timeout_t policy) {
  return guarded("gw_comm_set_on_timeout", [&] {
    auto& c = comm_of(comm);
    switch (policy) {
      case GW_ON_TIMEOUT_ABORT: c.set_on_timeout(gradwire::OnTimeout::Abort); return;
      case GW_ON_TIMEOUT_RETURN: c.set_on_timeout(gradwire::OnTimeout::Return); return;
      default: break;  // any other int a C caller passed
    }
    throw CError{GW_INVALID_ARGUMENT, "policy is neither GW_ON_TIMEOUT_ABORT nor _RETURN"};
  });
}

gw_status_t gw_allreduce(gw_comm_t comm, const void* send, void* recv, size_t count,
                         gw_dtype_t dtype, gw_op_t op) {
  return guarded("gw_allreduce", [&] {
    comm_of(comm).allreduce(send, recv, count, dt(dtype), rop(op));
  });
}

gw_status_t gw_iallreduce(gw_comm_t comm, const void* send, void* recv, size_t count,
                          gw_dtype_t dtype, gw_op_t op, gw_request_t* req) {
  return guarded("gw_iallreduce", [&] {
    auto& c = comm_of(comm);
    start(req, [&] { return c.iallreduce(send, recv, count, dt(dtype), rop(op)); });
  });
}

gw_status_t gw_allgather(gw_comm_t comm, const void* send, void* recv, size_t count,
                         gw_dtype_t dtype) {
  return guarded("gw_allgather",
                 [&] { comm_of(comm).allgather(send, recv, count, dt(dtype)); });
}

gw_status_t gw_iallgather(gw_comm_t comm, const void* send, void* recv, size_t count,
                          gw_dtype_t dtype, gw_request_t* req) {
  return guarded("gw_iallgather", [&] {
    auto& c = comm_of(comm);
    start(req, [&] { return c.iallgather(send, recv, count, dt(dtype)); });
  });
}

gw_status_t gw_reduce_scatter(gw_comm_t comm, const void* send, void* recv,
                              size_t recv_count, gw_dtype_t dtype, gw_op_t op) {
  return guarded("gw_reduce_scatter", [&] {
    comm_of(comm).reduce_scatter(send, recv, recv_count, dt(dtype), rop(op));
  });
}

gw_status_t gw_ireduce_scatter(gw_comm_t comm, const void* send, void* recv,
                               size_t recv_count, gw_dtype_t dtype, gw_op_t op,
                               gw_request_t* req) {
  return guarded("gw_ireduce_scatter", [&] {
    auto& c = comm_of(comm);
    start(req, [&] { return c.ireduce_scatter(send, recv, recv_count, dt(dtype), rop(op)); });
  });
}

gw_status_t gw_broadcast(gw_comm_t comm, void* buf, size_t count, gw_dtype_t dtype,
                         int root) {
  return guarded("gw_broadcast",
                 [&] { comm_of(comm).broadcast(buf, count, dt(dtype), root); });
}

gw_status_t gw_ibroadcast(gw_comm_t comm, void* buf, size_t count, gw_dtype_t dtype,
                          int root, gw_request_t* req) {
  return guarded("gw_ibroadcast", [&] {
    auto& c = comm_of(comm);
    start(req, [&] { return c.ibroadcast(buf, count, dt(dtype), root); });
  });
}

gw_status_t gw_request_wait(gw_request_t req) {
  return guarded("gw_request_wait",
                 [&] { need(req, "request handle is NULL").req.wait(); });
}

gw_status_t gw_request_test(gw_request_t req, int* done) {
  return guarded("gw_request_test", [&] {
    auto& r = need(req, "request handle is NULL").req;
    need(done, "done out-pointer is NULL") = r.test() ? 1 : 0;
  });
}

gw_status_t gw_request_free(gw_request_t* req) {
  return guarded("gw_request_free", [&] {
    delete std::exchange(need(req, "request pointer is NULL"), nullptr);
  });
}

gw_status_t gw_plan_config_init(gw_plan_config_t* config) {
  return guarded("gw_plan_config_init", [&] {
    auto& c = need(config, "config is NULL");
    c = gw_plan_config_t{};
    c.collective = GW_PLAN_ALLREDUCE;
    c.dtype = GW_FLOAT32;
    c.op = GW_SUM;
    c.codec = nullptr;
    c.algorithm = nullptr;
    c.error_feedback = 1;
    c.seed = 0;
    c.momentum = 0.0f;
    c.momentum_masking = 1;
    c.clip_norm = 0.0f;
    c.warmup_steps = 0;
    c.warmup_density = 0.25;
    c.powersgd_rank = 4;
    c.shape_count = 0;
    c.shapes = nullptr;
    c.balance_shards = 0;
    c.memory = GW_MEMORY_HOST;
  });
}

gw_status_t gw_plan_create(gw_comm_t comm, const gw_plan_config_t* config, gw_plan_t* out) {
  return guarded("gw_plan_create", [&] {
    auto& c = comm_of(comm);
    const auto& in = need(config, "config is NULL");
    need(out, "plan out-pointer is NULL") = nullptr;
    if (in.collective != GW_PLAN_ALLREDUCE && in.collective != GW_PLAN_ALLGATHER &&
        in.collective != GW_PLAN_REDUCE_SCATTER)
      throw CError{GW_INVALID_ARGUMENT,
                   "collective is not GW_PLAN_ALLREDUCE, _ALLGATHER or _REDUCE_SCATTER"};
    gradwire::PlanConfig cfg;
    cfg.collective = in.collective == GW_PLAN_ALLREDUCE   ? gradwire::PlanCollective::Allreduce
                     : in.collective == GW_PLAN_ALLGATHER ? gradwire::PlanCollective::Allgather
                                                          : gradwire::PlanCollective::ReduceScatter;
    cfg.count = in.count;
    cfg.dtype = dt(in.dtype);
    cfg.op = rop(in.op);
    cfg.codec = in.codec ? in.codec : "none";
    cfg.algorithm = in.algorithm ? in.algorithm : "auto";
    cfg.error_feedback = in.error_feedback != 0;
    cfg.seed = in.seed;
    cfg.momentum = in.momentum;
    cfg.momentum_masking = in.momentum_masking != 0;
    cfg.clip_norm = in.clip_norm;
    cfg.warmup_steps = in.warmup_steps;
    cfg.warmup_density = in.warmup_density;
    cfg.powersgd_rank = in.powersgd_rank;
    if (in.shape_count > 0 && !in.shapes)
      throw CError{GW_INVALID_ARGUMENT, "shape_count is non-zero and shapes is NULL"};
    for (std::size_t i = 0; i < in.shape_count; ++i)
      cfg.shapes.push_back({in.shapes[2 * i], in.shapes[2 * i + 1]});
    cfg.balance_shards = in.balance_shards != 0;
    if (in.memory != GW_MEMORY_HOST && in.memory != GW_MEMORY_DEVICE)
      throw CError{GW_INVALID_ARGUMENT, "memory is neither GW_MEMORY_HOST nor GW_MEMORY_DEVICE"};
    cfg.memory = in.memory == GW_MEMORY_DEVICE ? gradwire::Memory::Device : gradwire::Memory::Host;
    *out = new gw_plan_s{gradwire::Plan(c, cfg)};
  });
}

gw_status_t gw_plan_destroy(gw_plan_t* plan) {
  return guarded("gw_plan_destroy", [&] {
    delete std::exchange(need(plan, "plan pointer is NULL"), nullptr);
  });
}

gw_status_t gw_plan_run(gw_plan_t plan, const void* send, void* recv) {
  return guarded("gw_plan_run", [&] { need(plan, "plan handle is NULL").plan.run(send, recv); });
}

gw_status_t gw_plan_start(gw_plan_t plan, const void* send, void* recv, gw_request_t* req) {
  return guarded("gw_plan_start", [&] {
    auto& p = need(plan, "plan handle is NULL").plan;
    start(req, [&] { return p.start(send, recv); });
  });
}

gw_status_t gw_plan_set_label(gw_plan_t plan, const char* label) {
  return guarded("gw_plan_set_label", [&] {
    (void)need(label, "label is NULL");
    need(plan, "plan handle is NULL").plan.set_label(label);
  });
}

gw_status_t gw_plan_stats(gw_plan_t plan, gw_plan_stats_t* stats) {
  return guarded("gw_plan_stats", [&] {
    const auto& s = need(plan, "plan handle is NULL").plan.stats();
    auto& o = need(stats, "stats out-pointer is NULL");
    o.algorithm = s.algorithm.c_str();
    o.logical_bytes = s.logical_bytes;
    o.wire_bytes = s.wire_bytes;
    o.encode_s = s.encode_s;
    o.transfer_s = s.transfer_s;
    o.decode_s = s.decode_s;
    o.total_s = s.total_s;
    o.decision = s.decision.c_str();
    o.switches = s.switches;
    o.measured_dense_s = s.measured_dense_s;
    o.measured_compressed_s = s.measured_compressed_s;
  });
}

gw_status_t gw_plan_step(gw_plan_t plan, uint64_t* step) {
  return guarded("gw_plan_step", [&] {
    need(step, "step out-pointer is NULL") = need(plan, "plan handle is NULL").plan.step();
  });
}

gw_status_t gw_plan_reset_residual(gw_plan_t plan) {
  return guarded("gw_plan_reset_residual",
                 [&] { need(plan, "plan handle is NULL").plan.reset_residual(); });
}

gw_status_t gw_plan_save_residual(gw_plan_t plan, const char* path) {
  return guarded("gw_plan_save_residual", [&] {
    auto& p = need(plan, "plan handle is NULL").plan;
    if (path == nullptr) throw CError{GW_INVALID_ARGUMENT, "path is NULL"};
    p.save_residual(path);
  });
}

gw_status_t gw_plan_carry_residual(gw_plan_t plan, gw_plan_t from) {
  return guarded("gw_plan_carry_residual", [&] {
    auto& p = need(plan, "plan handle is NULL").plan;
    p.carry_residual(need(from, "source plan handle is NULL").plan);
  });
}

gw_status_t gw_plan_load_residual(gw_plan_t plan, const char* path) {
  return guarded("gw_plan_load_residual", [&] {
    auto& p = need(plan, "plan handle is NULL").plan;
    if (path == nullptr) throw CError{GW_INVALID_ARGUMENT, "path is NULL"};
    p.load_residual(path);
  });
}

gw_status_t gw_plan_save_state(gw_plan_t plan, const char* path) {
  return guarded("gw_plan_save_state", [&] {
    auto& p = need(plan, "plan handle is NULL").plan;
    if (path == nullptr) throw CError{GW_INVALID_ARGUMENT, "path is NULL"};
    p.save_state(path);
  });
}

gw_status_t gw_plan_load_state(gw_plan_t plan, const char* path) {
  return guarded("gw_plan_load_state", [&] {
    auto& p = need(plan, "plan handle is NULL").plan;
    if (path == nullptr) throw CError{GW_INVALID_ARGUMENT, "path is NULL"};
    p.load_state(path);
  });
}

gw_status_t gw_allreduce_compressed(gw_comm_t comm, const void* send, void* recv, size_t count,
                                    gw_dtype_t dtype, gw_op_t op, const char* codec,
                                    const char* algorithm) {
  return guarded("gw_allreduce_compressed", [&] {
    auto& c = comm_of(comm);
    if (codec == nullptr) throw CError{GW_INVALID_ARGUMENT, "codec is NULL"};
    gradwire::allreduce_compressed(c, send, recv, count, dt(dtype), rop(op), codec,
                                   algorithm ? algorithm : "auto");
  });
}

gw_status_t gw_plan_predicted(gw_plan_t plan, double* predicted_s, double* dense_s,
                              double* compressed_s) {
  return guarded("gw_plan_predicted", [&] {
    const auto& s = need(plan, "plan handle is NULL").plan.stats();
    if (predicted_s) *predicted_s = s.predicted_s;
    if (dense_s) *dense_s = s.predicted_dense_s;
    if (compressed_s) *compressed_s = s.predicted_compressed_s;
  });
}

// ---- elastic membership ----

gw_status_t gw_comm_respawn(gw_comm_t comm, uint64_t step, gw_comm_t* out) {
  return guarded("gw_comm_respawn", [&] {
    auto& c = comm_of(comm);
    need(out, "communicator out-pointer is NULL") = nullptr;
    *out = new gw_comm_s{c.respawn(step)};
  });
}

gw_status_t gw_comm_grow(gw_comm_t comm, int n, uint64_t step, gw_comm_t* out) {
  return guarded("gw_comm_grow", [&] {
    auto& c = comm_of(comm);
    need(out, "communicator out-pointer is NULL") = nullptr;
    *out = new gw_comm_s{c.grow(n, step)};
  });
}

gw_status_t gw_comm_joined(gw_comm_t comm, int* joined) {
  return guarded("gw_comm_joined", [&] {
    need(joined, "joined is NULL") = comm_of(comm).joined() ? 1 : 0;
  });
}

gw_status_t gw_comm_resume_step(gw_comm_t comm, uint64_t* step) {
  return guarded("gw_comm_resume_step", [&] {
    need(step, "step is NULL") = comm_of(comm).resume_step();
  });
}

gw_status_t gw_comm_share_state(gw_comm_t comm, const gw_state_buffer_t* buffers, size_t n) {
  return guarded("gw_comm_share_state", [&] {
    auto& c = comm_of(comm);
    if (n > 0 && buffers == nullptr) throw CError{GW_INVALID_ARGUMENT, "buffers is NULL"};
    std::vector<gradwire::StateBuffer> list;
    for (size_t i = 0; i < n; ++i) {
      if (buffers[i].name == nullptr)
        throw CError{GW_INVALID_ARGUMENT, "a state buffer's name is NULL"};
      list.push_back({buffers[i].name, buffers[i].data, buffers[i].count, dt(buffers[i].dtype),
                      gradwire::Memory::Host});
    }
    c.share_state(list);
  });
}

gw_status_t gw_plan_join_residual(gw_plan_t plan) {
  return guarded("gw_plan_join_residual", [&] {
    need(plan, "plan handle is NULL").plan.carry_residual(nullptr);
  });
}

// ---- for bindings from other languages ----

namespace {
bool g_mpi_initialized_here = false;  // by gw_mpi_init, so gw_mpi_finalize may finalize it

int mpi_level(gw_thread_level_t l) {
  switch (l) {
    case GW_THREAD_SINGLE: return MPI_THREAD_SINGLE;
    case GW_THREAD_FUNNELED: return MPI_THREAD_FUNNELED;
    case GW_THREAD_SERIALIZED: return MPI_THREAD_SERIALIZED;
    case GW_THREAD_MULTIPLE: return MPI_THREAD_MULTIPLE;
    default: break;
  }
  throw CError{GW_INVALID_ARGUMENT, "thread level is not one of GW_THREAD_*"};
}

gw_thread_level_t gw_level(int mpi) {
  if (mpi == MPI_THREAD_MULTIPLE) return GW_THREAD_MULTIPLE;
  if (mpi == MPI_THREAD_SERIALIZED) return GW_THREAD_SERIALIZED;
  if (mpi == MPI_THREAD_FUNNELED) return GW_THREAD_FUNNELED;
  return GW_THREAD_SINGLE;
}

void mpi_check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  MPI_Error_string(rc, text, &len);
  throw gradwire::Error(ErrorCode::Mpi, std::string(what) + " failed: " + text);
}
}  // namespace

gw_status_t gw_mpi_init(gw_thread_level_t required, gw_thread_level_t* provided,
                        int* initialized_here) {
  return guarded("gw_mpi_init", [&] {
    const int want = mpi_level(required);
    int finalized = 0, initialized = 0, got = MPI_THREAD_SINGLE;
    MPI_Finalized(&finalized);
    if (finalized) throw CError{GW_MPI_ERROR, "MPI is finalized already"};
    MPI_Initialized(&initialized);
    if (initialized) {
      mpi_check(MPI_Query_thread(&got), "MPI_Query_thread");
    } else {
      mpi_check(MPI_Init_thread(nullptr, nullptr, want, &got), "MPI_Init_thread");
      g_mpi_initialized_here = true;
    }
    if (provided) *provided = gw_level(got);
    if (initialized_here) *initialized_here = initialized ? 0 : 1;
  });
}

gw_status_t gw_mpi_finalize(void) {
  return guarded("gw_mpi_finalize", [&] {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!g_mpi_initialized_here || finalized) return;
    g_mpi_initialized_here = false;
    mpi_check(MPI_Finalize(), "MPI_Finalize");
  });
}

gw_status_t gw_mpi_comm_world_f(MPI_Fint* out) {
  return guarded("gw_mpi_comm_world_f", [&] {
    need(out, "out-pointer is NULL") = MPI_Comm_c2f(MPI_COMM_WORLD);
  });
}

gw_status_t gw_plan_run_stream(gw_plan_t plan, const void* send, void* recv, void* cuda_stream) {
  return guarded("gw_plan_run_stream", [&] {
    need(plan, "plan handle is NULL").plan.run_on_stream(send, recv, cuda_stream);
  });
}

gw_status_t gw_plan_start_stream(gw_plan_t plan, const void* send, void* recv,
                                 void* cuda_stream, gw_request_t* req) {
  return guarded("gw_plan_start_stream", [&] {
    auto& p = need(plan, "plan handle is NULL").plan;
    start(req, [&] { return p.start_on_stream(send, recv, cuda_stream); });
  });
}

gw_status_t gw_plan_set_step(gw_plan_t plan, uint64_t step) {
  return guarded("gw_plan_set_step",
                 [&] { need(plan, "plan handle is NULL").plan.set_step(step); });
}

}  // extern "C"
