#include <climits>
#include <cstdio>
#include <limits>

#include "bootstrap.hpp"
#include "bounded.hpp"
#include "check.hpp"
#include "config.hpp"
#include "device_backend.hpp"
#include "device_setup.hpp"
#include "fault/elastic.hpp"
#include "gradwire/config.hpp"
#include "request_state.hpp"
#include "timeline.hpp"
#include "transport/mpi_dense.hpp"

namespace gradwire {

using detail::CallInfo;

namespace {

OnTimeout resolve_policy(Options::Policy p) {
  if (p == Options::Policy::Abort) return OnTimeout::Abort;
  if (p == Options::Policy::Return) return OnTimeout::Return;
  const std::string v = detail::env_string("GRADWIRE_ON_TIMEOUT");
  if (v.empty() || v == "abort") return OnTimeout::Abort;
  if (v == "return") return OnTimeout::Return;
  throw Error(ErrorCode::InvalidArgument,
              "gradwire: GRADWIRE_ON_TIMEOUT='" + v + "' is not one of: abort, return");
}

}  // namespace

Communicator::Impl::Impl(MPI_Comm parent, const Options& o)
    : options(o), watch([this](const CallInfo& call, double timeout_s) {
        const bool init = std::string(call.collective) == "rendezvous";
        abort_job(detail::message(rank, size, call,
                                  "did not complete within " + std::to_string(timeout_s) +
                                      (init ? " s (GRADWIRE_INIT_TIMEOUT)" : " s (GRADWIRE_TIMEOUT)") +
                                      culprits(call) + "; aborting the job"));
      }) {
  int up = 0, down = 0;
  MPI_Initialized(&up);
  MPI_Finalized(&down);
  if (!up || down) {
    throw Error(ErrorCode::InvalidArgument,
                "gradwire: Communicator: MPI is not initialized (call MPI_Init first, and "
                "create communicators before MPI_Finalize)");
  }
  if (parent == MPI_COMM_NULL) {
    throw Error(ErrorCode::InvalidArgument, "gradwire: Communicator: MPI_COMM_NULL given");
  }
  MPI_Comm_rank(parent, &rank);
  MPI_Comm_size(parent, &size);
  detail::warn_unknown_env_once();
  // A bad setting on one rank must not leave the others waiting: every rank parses, then all
  // meet (with a default deadline where the bad one was the deadline) and agree on the verdict.
  std::string config_error;
  ErrorCode config_code = ErrorCode::InvalidArgument;
  double init_timeout = 300;
  int ranks_per_node = 0;
  fault = std::make_unique<detail::FaultState>();
  try {
    if (o.timeout_s > 0) detail::check_timeout_option("Options::timeout_s", o.timeout_s);
    if (o.init_timeout_s > 0)
      detail::check_timeout_option("Options::init_timeout_s", o.init_timeout_s);
    init_timeout = o.init_timeout_s > 0 ? o.init_timeout_s
                                        : detail::env_timeout("GRADWIRE_INIT_TIMEOUT", 300);
    timeout_s = o.timeout_s > 0 ? o.timeout_s : detail::env_timeout("GRADWIRE_TIMEOUT", 300);
    policy = resolve_policy(o.on_timeout);
    ranks_per_node =
        o.ranks_per_node > 0 ? o.ranks_per_node : detail::env_int("GRADWIRE_NODE_SPLIT", 0);
    checked = o.check >= 0 ? o.check > 0 : detail::env_check();
    const Options::FailurePolicy fp = detail::resolve_on_failure(o.on_failure);
    fault->shrink = fp != Options::FailurePolicy::Abort;
    fault->respawn = fp == Options::FailurePolicy::Respawn;
  } catch (const Error& e) {
    config_error = e.what();
    config_code = e.code();
  }
  init_timeout_s = init_timeout;

  const double t0 = MPI_Wtime();
  try {
    detail::await_arrival(parent, init_timeout);
  } catch (const Error& e) {
    if (policy == OnTimeout::Abort) abort_job(e.what());
    throw;
  }
  CallInfo call;
  call.collective = "rendezvous";
  call.has_data = false;
  try {
    detail::Armed guard(watch, init_timeout, call);
    check_mpi(MPI_Comm_dup(parent, &comm), call, "MPI_Comm_dup");
    MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
    std::vector<int> bad(static_cast<std::size_t>(size), 0);
    bad[static_cast<std::size_t>(rank)] = config_error.empty() ? 0 : 1;
    check_mpi(MPI_Allgather(MPI_IN_PLACE, 1, MPI_INT, bad.data(), 1, MPI_INT, comm), call,
              "MPI_Allgather");
    if (!config_error.empty()) throw Error(config_code, config_error);
    std::string who;
    for (int r = 0; r < size; ++r)
      if (bad[static_cast<std::size_t>(r)]) who += (who.empty() ? "" : ", ") + std::to_string(r);
    if (!who.empty()) {
      fail(ErrorCode::InvalidArgument, call,
           "a GRADWIRE_* setting or Options field was rejected on rank(s) " + who +
               " (see the message there)");
    }
    const detail::NodeLayout n = detail::split_nodes(comm, ranks_per_node);
    local = n.local;
    leaders = n.leaders;
    for (MPI_Comm sub : {local, leaders})
      if (sub != MPI_COMM_NULL) MPI_Comm_set_errhandler(sub, MPI_ERRORS_RETURN);
    local_rank = n.local_rank;
    local_size = n.local_size;
    node = n.node;
    node_count = n.node_count;
    attach_progress_board();
    timeline_owner = timeline::open(
        o.timeline.empty() ? detail::env_string("GRADWIRE_TIMELINE") : o.timeline, comm,
        init_timeout);
  } catch (...) {
    release();
    throw;
  }
  cuda_present = detail::cuda_device_present();
  // The NCCL communicator waits for the first device-memory call (device_setup.hpp), so host
  // work never depends on the GPUs; Eager makes it here, and a failure fails the constructor.
  if (o.device_setup == Options::DeviceSetup::Eager) {
    call.collective = "device setup (Options::device_setup = Eager)";
    try {
      detail::ensure_device(*this, call);
    } catch (...) {
      release();  // the destructor does not run for a constructor that throws
      throw;
    }
  }
  rendezvous_s = MPI_Wtime() - t0;
}

Communicator::Impl::~Impl() { release(); }

void Communicator::Impl::release() noexcept {
  if (timeline_owner) {
    timeline_owner = false;
    int gone = 0;
    MPI_Finalized(&gone);
    // Bounded: a rank that never comes costs rank 0 at most a minute (then per-rank parts).
    if (gone || comm == MPI_COMM_NULL) timeline::write_own_part();
    else timeline::close(comm, !pending_leaked, std::min(timeout_s, 60.0));
  }
  // An orphan whose MPI request never completed (a peer that is gone) may still be written
  // by MPI: leak it rather than free memory under MPI's feet.
  for (auto& o : orphans) {
    int flag = 1;
    if (!o->mpi.empty() && detail::test_all(o->mpi, &flag) != MPI_SUCCESS) flag = 0;
    if (!flag) {
      (void)o.release();
      pending_leaked = true;
    }
  }
  orphans.clear();
  device.reset();
  board.release();
  int down = 0;
  MPI_Finalized(&down);
  if (down) return;  // MPI already freed everything
  for (MPI_Comm* c : {&leaders, &local, &comm}) {
    // Freeing a communicator under a collective that never completed (a peer gone or late)
    // lets MPI progress it on freed state later (a crash in MPI_Finalize): leak it instead.
    if (c == &comm && pending_leaked) continue;
    if (*c != MPI_COMM_NULL) MPI_Comm_free(c);
  }
}

void Communicator::Impl::attach_progress_board() { board.attach(comm); }

std::string Communicator::Impl::culprits(const CallInfo& call) const {
  const std::string name = call.collective;
  if (name == "rendezvous") return "";
  // Plan runs ("plan allreduce sra q8") go on the plan's own communicator and have their own
  // count; plan creation ("plan"), split and the dense calls share the communicator's.
  const bool plan = name.rfind("plan ", 0) == 0;
  std::string s = board.culprits(
      plan ? detail::ProgressBoard::PlanRun : detail::ProgressBoard::Dense, node_count);
  if (!checked && s.find("every rank on this host has reached") != std::string::npos)
    s += " (if the ranks disagree on its arguments, GRADWIRE_CHECK=1 names them)";
  return s;
}

void Communicator::Impl::orphan(std::unique_ptr<Request::State> st) noexcept {
  st->done = true;  // never waited on again
  orphans.push_back(std::move(st));
}

void Communicator::Impl::fail(ErrorCode code, const CallInfo& call,
                              const std::string& cause) const {
  throw Error(code, detail::message(rank, size, call, cause));
}

void Communicator::Impl::abort_job(const std::string& msg) const noexcept {
  std::fprintf(stderr, "%s\n", msg.c_str());
  std::fflush(stderr);
  timeline::instant("abort", msg);
  timeline::write_own_part();
  if (device) device->abort();
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::_Exit(1);
}

void Communicator::Impl::timed_out(const CallInfo& call, OnTimeout how) const {
  const std::string msg = detail::message(
      rank, size, call,
      "did not complete within " + std::to_string(timeout_s) + " s (GRADWIRE_TIMEOUT)" +
          culprits(call) + (how == OnTimeout::Abort ? "; aborting the job" : ""));
  timeline::instant("timeout", msg);
  if (how == OnTimeout::Abort) abort_job(msg);
  throw Error(ErrorCode::Timeout, msg);
}

void Communicator::Impl::mpi_failed(int rc, const CallInfo& call, const char* what) const {
  pending_leaked = true;
  detail::on_mpi_error(*this, rc, call, what);  // a dead peer: PeerFailed or abort
  // Open MPI 4.1's libnbc can hand back its internal -1; MPI_Error_string on a code outside
  // MPI's range is itself an error, raised fatally on MPI_COMM_WORLD.
  int last = MPI_ERR_LASTCODE, flag = 0;
  int* used = nullptr;
  MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_LASTUSEDCODE, &used, &flag);
  if (flag && used) last = *used;
  std::string text = "MPI error code " + std::to_string(rc);
  if (rc > 0 && rc <= last) {
    char buf[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, buf, &len) == MPI_SUCCESS) text.assign(buf, static_cast<std::size_t>(len));
  }
  fail(ErrorCode::Mpi, call, std::string(what) + " failed: " + text);
}

// ---------------------------------------------------------------------------------------
// Argument checks: every one runs before anything goes on the wire.

namespace {

using Impl = Communicator::Impl;

Impl& live(const std::shared_ptr<Impl>& impl, const CallInfo& call) {
  if (!impl) {
    throw Error(ErrorCode::Finalized,
                "gradwire: " + detail::describe(call) + ": communicator was moved from");
  }
  if (impl->finalized) impl->fail(ErrorCode::Finalized, call, "communicator used after finalize()");
  // Collectives on a failed communicator fail again at once; getters still answer.
  if (call.has_data) detail::check_not_failed(*impl, call);
  return *impl;
}

void check_args(const Impl& c, const CallInfo& call, std::size_t elements,
                std::initializer_list<std::pair<const void*, const char*>> buffers) {
  if (!is_valid(call.dtype)) {
    c.fail(ErrorCode::InvalidArgument, call,
           "invalid dtype value " + std::to_string(static_cast<int>(call.dtype)));
  }
  if (call.op >= 0 && !is_valid(static_cast<ReduceOp>(call.op))) {
    c.fail(ErrorCode::InvalidArgument, call, "invalid op value " + std::to_string(call.op));
  }
  const std::size_t esz = dtype_size(call.dtype);
  if (elements / static_cast<std::size_t>(c.size) != call.count && elements != call.count) {
    c.fail(ErrorCode::InvalidArgument, call,
           "count times " + std::to_string(c.size) + " ranks overflows size_t");
  }
  if (elements > std::numeric_limits<std::size_t>::max() / esz) {
    c.fail(ErrorCode::InvalidArgument, call,
           "count " + std::to_string(elements) + " times element size " + std::to_string(esz) +
               " overflows size_t");
  }
  if (call.count > static_cast<std::size_t>(INT_MAX)) {
    c.fail(ErrorCode::Unsupported, call,
           "count exceeds MPI's per-call limit of " + std::to_string(INT_MAX) +
               " elements; split the buffer");
  }
  if (call.count > 0) {
    for (const auto& [ptr, name] : buffers)
      if (!ptr) c.fail(ErrorCode::InvalidArgument, call, std::string("null ") + name + " buffer with nonzero count");
  }
  if (call.op == static_cast<int>(ReduceOp::Prod) &&
      (call.dtype == DType::Float16 || call.dtype == DType::BFloat16)) {
    c.fail(ErrorCode::Unsupported, call,
           "prod is not supported on 16-bit floats (each product would round to 16 bits); "
           "reduce in float32");
  }
}

// Any value outside the enum, negative ones included (-1 means "no op" only inside CallInfo).
void check_op(const Impl& c, const CallInfo& call, ReduceOp op) {
  if (is_valid(op)) return;
  CallInfo shown = call;
  shown.op = -1;
  c.fail(ErrorCode::InvalidArgument, shown,
         "invalid op value " + std::to_string(static_cast<int>(op)));
}

bool on_device(Impl& c, const CallInfo& call, Memory mem, const void* p) {
  if (mem == Memory::Host) return false;
  const bool device = mem == Memory::Device || (c.cuda_present && detail::is_device_pointer(p));
  // Collective, like the call itself: the first device call makes the NCCL communicator.
  if (device) detail::ensure_device(c, call);
  return device;
}

CallInfo info(const char* name, std::size_t count, DType t, int op = -1, int peer = -1) {
  CallInfo c;
  c.collective = name;
  c.count = count;
  c.dtype = t;
  c.op = op;
  c.peer = peer;
  return c;
}

// Completed requests (count 0, blocking device calls) still need a state to answer test().
Request done_request(const std::shared_ptr<Impl>& impl, const CallInfo& call) {
  auto st = std::make_unique<Request::State>();
  st->comm = impl;
  st->call = call;
  st->done = true;
  return Request(std::move(st));
}

}  // namespace

// ---------------------------------------------------------------------------------------

// A process that respawn() or grow() started joins the running job instead (fault/elastic.hpp).
Communicator::Communicator(MPI_Comm comm, const Options& options)
    : impl_(detail::spawned_to_join() ? detail::join_running_job(options)
                                      : std::make_shared<Impl>(comm, options)) {}
Communicator::Communicator(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
Communicator::~Communicator() = default;
Communicator::Communicator(Communicator&&) noexcept = default;
Communicator& Communicator::operator=(Communicator&&) noexcept = default;

Communicator::Impl& Communicator::impl() const {
  CallInfo call;
  call.collective = "communicator";
  call.has_data = false;
  return live(impl_, call);
}

int Communicator::rank() const { return impl().rank; }
int Communicator::size() const { return impl().size; }
int Communicator::local_rank() const { return impl().local_rank; }
int Communicator::local_size() const { return impl().local_size; }
int Communicator::node() const { return impl().node; }
int Communicator::node_count() const { return impl().node_count; }
MPI_Comm Communicator::mpi_comm() const { return impl().comm; }
MPI_Comm Communicator::local_comm() const { return impl().local; }
MPI_Comm Communicator::leaders_comm() const { return impl().leaders; }
double Communicator::rendezvous_seconds() const { return impl().rendezvous_s; }
bool Communicator::has_device() const { return impl().device != nullptr; }
int Communicator::device() const { return impl().device ? impl().device->device() : -1; }
double Communicator::timeout_seconds() const { return impl().timeout_s; }
void Communicator::setup_device() {
  Impl& c = impl();
  CallInfo call;
  call.collective = "setup_device";
  call.has_data = false;
  detail::ensure_device(c, call);
}
OnTimeout Communicator::on_timeout() const { return impl().policy; }
void Communicator::set_on_timeout(OnTimeout policy) { impl().policy = policy; }

Communicator Communicator::split(int color, int key) const {
  Impl& c = impl();
  CallInfo call;
  call.collective = "split";
  call.has_data = false;
  if (color < 0) c.fail(ErrorCode::InvalidArgument, call, "color must be >= 0, got " + std::to_string(color));
  if (c.checked) {
    detail::CallKey k;
    k.collective = "split";
    detail::agree_on_call(c, call, k);
  }
  // MPI_Comm_split cannot be given a deadline: first every rank arrives (a barrier bounded by
  // the deadline and the policy), then the split, which every rank has reached, runs under the
  // watchdog; the sub-communicator's rendezvous gets the same deadline.
  c.board.enter(detail::ProgressBoard::Dense);
  detail::bounded_arrival(c, call);
  MPI_Comm sub = MPI_COMM_NULL;
  {
    detail::Armed guard(c.watch, c.timeout_s, call);
    c.check_mpi(MPI_Comm_split(c.comm, color, key, &sub), call, "MPI_Comm_split");
  }
  Options o = c.options;
  o.timeout_s = c.timeout_s;
  o.init_timeout_s = c.timeout_s;
  o.check = c.checked ? 1 : 0;
  o.on_timeout = c.policy == OnTimeout::Abort ? Options::Policy::Abort : Options::Policy::Return;
  o.device_setup = Options::DeviceSetup::Lazy;  // inherit_device decides, below
  try {
    Communicator result(sub, o);
    MPI_Comm_free(&sub);
    detail::inherit_device(c, *result.impl_, color,
                           c.options.device_setup == Options::DeviceSetup::Eager, call);
    return result;
  } catch (...) {
    if (sub != MPI_COMM_NULL) MPI_Comm_free(&sub);
    throw;
  }
}

Communicator Communicator::shrink() {
  CallInfo call;
  call.collective = "shrink";
  call.has_data = false;
  if (!impl_) throw Error(ErrorCode::Finalized, "gradwire: shrink: communicator was moved from");
  Impl& c = *impl_;
  if (c.finalized) c.fail(ErrorCode::Finalized, call, "communicator used after finalize()");
  MPI_Comm survivors = detail::take_survivors(c, call);
  Options o = c.options;
  o.timeout_s = c.timeout_s;
  o.on_timeout = c.policy == OnTimeout::Abort ? Options::Policy::Abort : Options::Policy::Return;
  o.on_failure = Options::FailurePolicy::Shrink;
  try {
    Communicator result(survivors, o);
    MPI_Comm_free(&survivors);
    return result;
  } catch (...) {
    MPI_Comm_free(&survivors);
    throw;
  }
}

void Communicator::finalize() {
  Impl& c = impl();
  c.release();
  c.finalized = true;
}

namespace {

// The one path behind each blocking/non-blocking pair: validate, then device or host.
template <class Device, class Host>
Request dispatch(const std::shared_ptr<Impl>& impl, const CallInfo& call, bool blocking,
                 Memory mem, const void* probe, Device&& device, Host&& host) {
  Impl& c = *impl;
  if (c.checked) detail::agree_on_call(c, call, detail::key_of(call));
  c.board.enter(detail::ProgressBoard::Dense);
  if (call.count == 0) return blocking ? Request() : done_request(impl, call);
  // Blocking calls on the timeline here; requests from post to completion (State::poll).
  timeline::Span span(blocking ? call.collective : nullptr, call.count * dtype_size(call.dtype));
  if (on_device(c, call, mem, probe)) {
    device(*c.device);
    auto st = std::make_unique<Request::State>();
    st->comm = impl;
    st->call = call;
    st->event = c.device->record(call);
    Request r(std::move(st));
    if (!blocking) return r;
    r.wait();
    return Request();
  }
  detail::StatePtr st = host(blocking);
  return st ? Request(std::move(st)) : Request();
}

Request allreduce_on(const std::shared_ptr<Impl>& impl, bool blocking, const void* send,
                     void* recv, std::size_t count, DType t, ReduceOp op, Memory mem) {
  const CallInfo call = info(blocking ? "allreduce" : "iallreduce", count, t, static_cast<int>(op));
  check_op(live(impl, call), call, op);
  check_args(live(impl, call), call, count, {{send, "send"}, {recv, "recv"}});
  return dispatch(
      impl, call, blocking, mem, recv,
      [&](detail::DeviceBackend& d) { d.allreduce(send, recv, count, t, op, call); },
      [&](bool b) { return detail::mpi_allreduce(impl, call, send, recv, count, t, op, b); });
}

Request allgather_on(const std::shared_ptr<Impl>& impl, bool blocking, const void* send,
                     void* recv, std::size_t count, DType t, Memory mem) {
  const CallInfo call = info(blocking ? "allgather" : "iallgather", count, t);
  Impl& c = live(impl, call);
  check_args(c, call, count * static_cast<std::size_t>(c.size), {{send, "send"}, {recv, "recv"}});
  return dispatch(
      impl, call, blocking, mem, recv,
      [&](detail::DeviceBackend& d) { d.allgather(send, recv, count, t, call); },
      [&](bool b) { return detail::mpi_allgather(impl, call, send, recv, count, t, b); });
}

Request reduce_scatter_on(const std::shared_ptr<Impl>& impl, bool blocking, const void* send,
                          void* recv, std::size_t count, DType t, ReduceOp op, Memory mem) {
  const CallInfo call =
      info(blocking ? "reduce_scatter" : "ireduce_scatter", count, t, static_cast<int>(op));
  Impl& c = live(impl, call);
  check_op(c, call, op);
  check_args(c, call, count * static_cast<std::size_t>(c.size), {{send, "send"}, {recv, "recv"}});
  return dispatch(
      impl, call, blocking, mem, recv,
      [&](detail::DeviceBackend& d) { d.reduce_scatter(send, recv, count, t, op, call); },
      [&](bool b) {
        return detail::mpi_reduce_scatter(impl, call, send, recv, count, t, op, b);
      });
}

Request broadcast_on(const std::shared_ptr<Impl>& impl, bool blocking, void* buf,
                     std::size_t count, DType t, int root, Memory mem) {
  const CallInfo call = info(blocking ? "broadcast" : "ibroadcast", count, t, -1, root);
  Impl& c = live(impl, call);
  check_args(c, call, count, {{buf, "data"}});
  if (root < 0 || root >= c.size) {
    c.fail(ErrorCode::InvalidArgument, call,
           "root " + std::to_string(root) + " is not a rank of this communicator (size " +
               std::to_string(c.size) + ")");
  }
  return dispatch(
      impl, call, blocking, mem, buf,
      [&](detail::DeviceBackend& d) { d.broadcast(buf, count, t, root, call); },
      [&](bool b) { return detail::mpi_broadcast(impl, call, buf, count, t, root, b); });
}

}  // namespace

void Communicator::allreduce(const void* send, void* recv, std::size_t count, DType dtype,
                             ReduceOp op, Memory mem) {
  allreduce_on(impl_, true, send, recv, count, dtype, op, mem);
}
Request Communicator::iallreduce(const void* send, void* recv, std::size_t count, DType dtype,
                                 ReduceOp op, Memory mem) {
  return allreduce_on(impl_, false, send, recv, count, dtype, op, mem);
}
void Communicator::allgather(const void* send, void* recv, std::size_t count, DType dtype,
                             Memory mem) {
  allgather_on(impl_, true, send, recv, count, dtype, mem);
}
Request Communicator::iallgather(const void* send, void* recv, std::size_t count, DType dtype,
                                 Memory mem) {
  return allgather_on(impl_, false, send, recv, count, dtype, mem);
}
void Communicator::reduce_scatter(const void* send, void* recv, std::size_t recv_count,
                                  DType dtype, ReduceOp op, Memory mem) {
  reduce_scatter_on(impl_, true, send, recv, recv_count, dtype, op, mem);
}
Request Communicator::ireduce_scatter(const void* send, void* recv, std::size_t recv_count,
                                      DType dtype, ReduceOp op, Memory mem) {
  return reduce_scatter_on(impl_, false, send, recv, recv_count, dtype, op, mem);
}
void Communicator::broadcast(void* buf, std::size_t count, DType dtype, int root, Memory mem) {
  broadcast_on(impl_, true, buf, count, dtype, root, mem);
}
Request Communicator::ibroadcast(void* buf, std::size_t count, DType dtype, int root,
                                 Memory mem) {
  return broadcast_on(impl_, false, buf, count, dtype, root, mem);
}

std::string build_info() {
  std::string s = "gradwire " GRADWIRE_VERSION_STRING " (MPI";
  if (GRADWIRE_HAVE_CUDA) s += ", CUDA";
  if (GRADWIRE_HAVE_NCCL) s += ", NCCL";
  return s + ")";
}

}  // namespace gradwire
