// Communicator's elastic members: respawn(), grow(), the joiner's view and the state
// hand-over. The spawning and merging is src/fault/elastic.cpp.
#include <climits>
#include <string>

#include "bounded.hpp"
#include "comm_impl.hpp"
#include "fault/elastic.hpp"
#include "gradwire/config.hpp"

namespace gradwire {

using detail::CallInfo;

namespace {

CallInfo membership_call(const char* name) {
  CallInfo call;
  call.collective = name;
  call.has_data = false;
  return call;
}

// Ranks of `comm` that are not in `survivors` (ascending).
std::vector<int> missing_from(MPI_Comm comm, MPI_Comm survivors) {
  MPI_Group all, alive, gone;
  MPI_Comm_group(comm, &all);
  MPI_Comm_group(survivors, &alive);
  MPI_Group_difference(all, alive, &gone);
  int n = 0;
  MPI_Group_size(gone, &n);
  std::vector<int> in(static_cast<std::size_t>(n)), out(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) in[static_cast<std::size_t>(i)] = i;
  if (n > 0) MPI_Group_translate_ranks(gone, n, in.data(), all, out.data());
  MPI_Group_free(&gone);
  MPI_Group_free(&alive);
  MPI_Group_free(&all);
  return out;
}

}  // namespace

Communicator Communicator::respawn(std::uint64_t step) {
  const CallInfo call = membership_call("respawn");
  if (!impl_) throw Error(ErrorCode::Finalized, "gradwire: respawn: communicator was moved from");
  Impl& c = *impl_;
  if (c.finalized) c.fail(ErrorCode::Finalized, call, "communicator used after finalize()");
  if (!GRADWIRE_HAVE_ULFM) return Communicator(detail::grow_onto(impl_, 0, {}, step, call));
  if (!c.fault->respawn) {
    c.fail(ErrorCode::InvalidArgument, call,
           "respawn() needs the respawn failure policy (Options::on_failure = Respawn or "
           "GRADWIRE_ON_FAILURE=respawn)");
  }
  MPI_Comm survivors = detail::take_survivors(c, call);
  Options o = c.options;
  o.timeout_s = c.timeout_s;
  o.init_timeout_s = c.init_timeout_s;
  o.on_timeout = c.policy == OnTimeout::Abort ? Options::Policy::Abort : Options::Policy::Return;
  o.on_failure = Options::FailurePolicy::Respawn;
  // A survivor dying during the growth ends it with PeerFailed on every other survivor (the
  // failure agreement on `base`): they shrink again and respawn every rank lost so far. Each
  // round loses a process, so this ends within size() rounds, each bounded by the deadline.
  while (true) {
    std::shared_ptr<Impl> base;
    try {
      base = std::make_shared<Impl>(survivors, o);
    } catch (...) {
      MPI_Comm_free(&survivors);
      throw;
    }
    MPI_Comm_free(&survivors);
    try {
      const std::vector<int> lost = missing_from(c.comm, base->comm);  // in c's numbering
      return Communicator(detail::grow_onto(base, c.rank, lost, step, call));
    } catch (const Error& e) {
      if (e.code() != ErrorCode::PeerFailed || !base->fault || !base->fault->failed) throw;
      survivors = detail::take_survivors(*base, call);
    }
  }
}

Communicator Communicator::grow(int n, std::uint64_t step) {
  const CallInfo call = membership_call("grow");
  Impl& c = impl();
  if (!GRADWIRE_HAVE_ULFM) return Communicator(detail::grow_onto(impl_, 0, {}, step, call));
  detail::check_not_failed(c, call);
  const MPI_Comm cc = c.comm;
  const std::vector<int> range = detail::bounded_of(
      c, call, "MPI_Iallreduce", std::vector<int>{-n, n}, [cc](void* b, MPI_Request* r) {
        return MPI_Iallreduce(MPI_IN_PLACE, b, 2, MPI_INT, MPI_MAX, cc, r);
      });
  if (-range[0] != range[1]) {
    c.fail(ErrorCode::InvalidArgument, call,
           "grow(n): n differs between ranks (from " + std::to_string(-range[0]) + " to " +
               std::to_string(range[1]) + ")");
  }
  if (n < 0 || n > INT_MAX - c.size) {
    c.fail(ErrorCode::InvalidArgument, call, "grow(n): n = " + std::to_string(n) + " is out of range");
  }
  std::vector<int> keys(static_cast<std::size_t>(n));
  for (int j = 0; j < n; ++j) keys[static_cast<std::size_t>(j)] = c.size + j;
  return Communicator(detail::grow_onto(impl_, c.rank, keys, step, call));
}

bool Communicator::joined() const { return impl().joined; }
bool Communicator::joining() { return detail::spawned_to_join(); }
std::uint64_t Communicator::resume_step() const { return impl().resume_step; }

void Communicator::share_state(const std::vector<StateBuffer>& buffers) {
  const CallInfo call = membership_call("share_state");
  Impl& c = impl();
  detail::check_not_failed(c, call);
  std::string mine;
  for (const StateBuffer& b : buffers) {
    mine += (mine.empty() ? "" : ", ") + b.name + "[" + std::to_string(b.count) + " " +
            std::string(dtype_name(b.dtype)) + "]";
  }
  // The source's list first, so a rank that names other buffers can say which.
  const int root = c.state_root;
  const MPI_Comm cc = c.comm;
  const auto length = detail::bounded_of(
      c, call, "MPI_Ibcast", std::vector<std::uint64_t>{mine.size()},
      [cc, root](void* b, MPI_Request* r) { return MPI_Ibcast(b, 1, MPI_UINT64_T, root, cc, r); });
  std::vector<char> theirs(mine.begin(), mine.end());
  theirs.resize(static_cast<std::size_t>(length[0]));
  theirs = detail::bounded_of(c, call, "MPI_Ibcast", theirs, [cc, root, &length](void* b, MPI_Request* r) {
    return MPI_Ibcast(b, static_cast<int>(length[0]), MPI_CHAR, root, cc, r);
  });
  const std::string source(theirs.begin(), theirs.end());
  const int differs = detail::bounded_of(c, call, "MPI_Iallreduce",
                                         std::vector<int>{source != mine ? 1 : 0},
                                         [cc](void* b, MPI_Request* r) {
                                           return MPI_Iallreduce(MPI_IN_PLACE, b, 1, MPI_INT,
                                                                 MPI_MAX, cc, r);
                                         })[0];
  if (differs) {
    c.fail(ErrorCode::Mismatch, call,
           "the state buffers differ between ranks: the source rank " + std::to_string(root) +
               " names {" + source + "}" +
               (source != mine ? ", this rank {" + mine + "}" : std::string(", as this rank does")));
  }
  for (const StateBuffer& b : buffers) broadcast(b.data, b.count, b.dtype, root, b.mem);
}

}  // namespace gradwire
