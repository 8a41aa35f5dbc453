#include "check.hpp"

#include <string>
#include <vector>

#include "bounded.hpp"

namespace gradwire::detail {
namespace {

constexpr int kFields = 6;
constexpr const char* kNames[kFields] = {"collective", "dtype", "op", "count", "root", "plan"};

std::uint64_t fnv1a(const char* s) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (; *s; ++s) h = (h ^ static_cast<unsigned char>(*s)) * 0x100000001b3ull;
  return h;
}

// The names a collective hash can stand for, to print the other ranks' calls.
constexpr const char* kCollectives[] = {
    "allreduce", "iallreduce", "allgather", "iallgather", "reduce_scatter", "ireduce_scatter",
    "broadcast", "ibroadcast", "plan create", "plan run", "split"};

std::string show(int field, std::uint64_t v) {
  switch (field) {
    case 0:
      for (const char* n : kCollectives)
        if (fnv1a(n) == v) return n;
      return "?";
    case 1: return std::string(dtype_name(static_cast<DType>(v)));
    case 2:
      return v == ~std::uint64_t{0} ? "none" : std::string(op_name(static_cast<ReduceOp>(v)));
    case 4: return v == ~std::uint64_t{0} ? "none" : std::to_string(v);
    default: return std::to_string(v);
  }
}

}  // namespace

CallKey key_of(const CallInfo& call) {
  CallKey k;
  k.collective = call.collective;
  k.dtype = static_cast<std::uint64_t>(call.dtype);
  k.op = call.op < 0 ? ~std::uint64_t{0} : static_cast<std::uint64_t>(call.op);
  k.count = call.count;
  k.root = call.peer < 0 ? ~std::uint64_t{0} : static_cast<std::uint64_t>(call.peer);
  return k;
}

void agree_on_call(Communicator::Impl& c, const CallInfo& call, const CallKey& key) {
  const std::uint64_t mine[kFields] = {fnv1a(key.collective), key.dtype, key.op, key.count,
                                       key.root, key.plan};
  // MAX of v and of ~v: every rank learns the largest and the smallest value of each field.
  std::vector<std::uint64_t> buf(2 * kFields);
  for (int i = 0; i < kFields; ++i) {
    buf[i] = mine[i];
    buf[kFields + i] = ~mine[i];
  }
  const MPI_Comm comm = c.comm;
  if (c.policy == OnTimeout::Abort) {
    // MPI's blocking allreduce is its fastest path; the watchdog bounds it (and aborts).
    Armed guard(c.watch, c.timeout_s, call);
    c.check_mpi(MPI_Allreduce(MPI_IN_PLACE, buf.data(), 2 * kFields, MPI_UINT64_T, MPI_MAX, comm),
                call, "MPI_Allreduce (checked mode)");
  } else {
    buf = bounded_of(c, call, "MPI_Iallreduce (checked mode)", buf, [comm](void* b, MPI_Request* r) {
      return MPI_Iallreduce(MPI_IN_PLACE, b, 2 * kFields, MPI_UINT64_T, MPI_MAX, comm, r);
    });
  }
  bool differ = false;
  for (int i = 0; i < kFields; ++i) differ = differ || buf[i] != ~buf[kFields + i];
  if (!differ) return;

  // Error path only: who holds what.
  std::vector<std::uint64_t> all(static_cast<std::size_t>(c.size) * kFields);
  for (int i = 0; i < kFields; ++i) all[static_cast<std::size_t>(c.rank) * kFields + i] = mine[i];
  all = bounded_of(c, call, "MPI_Iallgather (checked mode)", all, [comm](void* b, MPI_Request* r) {
    return MPI_Iallgather(MPI_IN_PLACE, kFields, MPI_UINT64_T, b, kFields, MPI_UINT64_T, comm, r);
  });
  std::string cause = "ranks disagree (checked mode):";
  bool first = true;
  for (int i = 0; i < kFields; ++i) {
    if (buf[i] == ~buf[kFields + i]) continue;
    // Group the ranks by value, in rank order of first appearance.
    std::vector<std::pair<std::uint64_t, std::string>> groups;
    for (int r = 0; r < c.size; ++r) {
      const std::uint64_t v = all[static_cast<std::size_t>(r) * kFields + i];
      std::size_t g = 0;
      while (g < groups.size() && groups[g].first != v) ++g;
      if (g == groups.size()) groups.push_back({v, ""});
      if (!groups[g].second.empty()) groups[g].second.push_back(',');
      groups[g].second.append(std::to_string(r));
    }
    cause.append(first ? " " : "; ").append(kNames[i]).append(" differs:");
    first = false;
    for (std::size_t g = 0; g < groups.size(); ++g) {
      if (g) cause.push_back(',');
      cause.append(" ").append(show(i, groups[g].first)).append(" on rank(s) ");
      cause.append(groups[g].second);
    }
  }
  c.fail(ErrorCode::Mismatch, call, cause);
}

}  // namespace gradwire::detail
