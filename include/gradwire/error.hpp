// The one exception type gradwire throws.
#pragma once

#include <stdexcept>
#include <string>

namespace gradwire {

// Values match the C ABI's gw_status_t; 0 is success there.
enum class ErrorCode : int {
  InvalidArgument = 1,  // null buffer, bad count, unknown codec string, ...
  Unsupported = 2,      // a dtype/op/codec pair that is not implemented
  Timeout = 3,          // a wait or the rendezvous passed its deadline
  Finalized = 4,        // use of a communicator after finalize()
  Mismatch = 5,         // ranks disagree (count, dtype, plan) in checked mode
  Mpi = 6,              // MPI returned an error
  Nccl = 7,             // NCCL returned an error
  Cuda = 8,             // the CUDA runtime returned an error
  WireFormat = 9,       // a malformed or truncated compressed message
  Internal = 10,        // a bug in gradwire
  // (11 is the C ABI's GW_OUT_OF_MEMORY.)
  PeerFailed = 12,      // a peer process died (GRADWIRE_ON_FAILURE=shrink): shrink() and go on
};

const char* error_code_name(ErrorCode code) noexcept;

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message)
      : std::runtime_error(message), code_(code) {}
  ErrorCode code() const noexcept { return code_; }

 private:
  ErrorCode code_;
};

}  // namespace gradwire
