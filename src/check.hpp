// Checked mode (Options::check, GRADWIRE_CHECK=1): before a collective moves any data, every
// rank contributes what it was asked to do, and one small MPI_Allreduce tells every rank
// whether the ranks agree. Ranks that disagree (a count, dtype, op or root; a plan on one rank
// and a dense call on another) all fail with ErrorCode::Mismatch, naming the field and the
// ranks, instead of returning different values or waiting for their deadline.
#pragma once

#include <cstdint>

#include "call_info.hpp"
#include "comm_impl.hpp"

namespace gradwire::detail {

// What a rank was asked to do. `collective` is the call's name (allreduce, iallreduce, "plan
// create", "plan run", split ...); plan is the plan's id on its communicator (0: none); op and
// root are all ones when the call has none.
struct CallKey {
  const char* collective = "";
  std::uint64_t dtype = 0, op = ~std::uint64_t{0}, count = 0, root = ~std::uint64_t{0}, plan = 0;
};

// The agreement: one MPI_Allreduce of 2 x 6 integers on c.comm, bounded by the communicator's
// deadline and policy. Throws Error(Mismatch) on every rank when any field differs; then a
// second, error-path-only MPI_Allgather learns which ranks hold which value.
void agree_on_call(Communicator::Impl& c, const CallInfo& call, const CallKey& key);

// The key of a dense collective, from its CallInfo.
CallKey key_of(const CallInfo& call);

}  // namespace gradwire::detail
