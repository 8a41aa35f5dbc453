// What a collective call was asked to do, for error messages that name it.
#pragma once

#include <cstddef>
#include <string>

#include "gradwire/types.hpp"

namespace gradwire::detail {

struct CallInfo {
  const char* collective = "";
  std::size_t count = 0;
  DType dtype = DType::Float32;
  int op = -1;    // a ReduceOp, or -1 when the collective has none
  int peer = -1;  // root or peer rank, or -1
  bool has_data = true;  // false for steps that move no user buffer (the rendezvous)
};

// "allreduce(count=1000, dtype=float32, op=sum)"
std::string describe(const CallInfo& call);

// "gradwire: rank 2 of 4: allreduce(count=1000, dtype=float32, op=sum): <cause>"
std::string message(int rank, int size, const CallInfo& call, const std::string& cause);

}  // namespace gradwire::detail
