#include "call_info.hpp"

namespace gradwire::detail {

std::string describe(const CallInfo& call) {
  if (!call.has_data) return call.collective;
  std::string s = std::string(call.collective) + "(count=" + std::to_string(call.count) +
                  ", dtype=" + std::string(dtype_name(call.dtype));
  if (call.op >= 0) s += ", op=" + std::string(op_name(static_cast<ReduceOp>(call.op)));
  if (call.peer >= 0) s += ", root=" + std::to_string(call.peer);
  return s + ")";
}

std::string message(int rank, int size, const CallInfo& call, const std::string& cause) {
  return "gradwire: rank " + std::to_string(rank) + " of " + std::to_string(size) + ": " +
         describe(call) + ": " + cause;
}

}  // namespace gradwire::detail
