// Device-memory collectives: the interface the NCCL backend implements, so that the
// communicator and requests compile the same with and without NCCL.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "call_info.hpp"
#include "gradwire/communicator.hpp"
#include "gradwire/error.hpp"
#include "gradwire/types.hpp"

namespace gradwire::detail {

class DeviceBackend {
 public:
  virtual ~DeviceBackend() = default;
  // Enqueue on the backend's stream; errors are thrown as gradwire::Error.
  virtual void allreduce(const void* send, void* recv, std::size_t count, DType t, ReduceOp op,
                         const CallInfo& call) = 0;
  virtual void allgather(const void* send, void* recv, std::size_t count, DType t,
                         const CallInfo& call) = 0;
  virtual void reduce_scatter(const void* send, void* recv, std::size_t recv_count, DType t,
                              ReduceOp op, const CallInfo& call) = 0;
  virtual void broadcast(void* buf, std::size_t count, DType t, int root,
                         const CallInfo& call) = 0;
  // An event marking everything enqueued so far; query() is true once it has passed.
  virtual void* record(const CallInfo& call) = 0;
  virtual bool query(void* event, const CallInfo& call) = 0;
  virtual void release_event(void* event) noexcept = 0;
  virtual void abort() noexcept = 0;  // ncclCommAbort: unblocks a hung device collective
  virtual int device() const noexcept = 0;
  // The backend of a sub-communicator `child` (ncclCommSplit from this one): collective over
  // this backend's ranks, bounded by `timeout_s`. Never throws: null and `error` on failure.
  virtual std::unique_ptr<DeviceBackend> split(Communicator::Impl& child, int color, int key,
                                               double timeout_s, std::string& error) noexcept = 0;
  // A new NCCL communicator (an ncclComm_t, owned by the caller) split from this backend's,
  // collective over its ranks, settled (src/transport/nccl_calls.hpp): a device plan's own
  // (src/transport/nccl_p2p.hpp). Never throws: null and `error` on failure.
  virtual void* split_comm(int color, int key, double timeout_s, std::string& error) noexcept {
    (void)color;
    (void)key;
    (void)timeout_s;
    error = "this device backend has no NCCL communicator";
    return nullptr;
  }
};

// Why one step of the device setup failed on this rank (empty cause: it did not).
struct DeviceProblem {
  ErrorCode code = ErrorCode::Internal;
  std::string cause;
  bool ok() const noexcept { return cause.empty(); }
};

// Whether the CUDA runtime sees a device here (false in builds without CUDA).
bool cuda_device_present() noexcept;
// Whether `p` is device (or managed) memory; false in builds without CUDA.
bool is_device_pointer(const void* p) noexcept;

}  // namespace gradwire::detail
