// The algorithms' transport over NCCL for device buffers (NCCL builds only): ncclSend/ncclRecv
// inside ncclGroupStart/End on the run's stream. Completion is a CUDA event recorded after
// each group. Device plans use it when every rank has its own GPU (collectives/
// device_path.hpp), each plan on an NCCL communicator of its own (split from the
// communicator's), so two plans' operations never interleave in different orders on
// different ranks. The transport owns that communicator:
// - a call that answers ncclInProgress is polled to completion before the next NCCL call,
//   bounded by `timeout_s`; past it, or on any failure, the communicator is aborted (nothing
//   of it stays in progress to poison later calls) and the error thrown: the plan is done;
// - an NCCL group is closed on every path, a throw between group_start and group_end
//   included (abandon_group; coll::Batch calls it), and nothing that can fail runs inside it.
// Its NCCL and CUDA calls are checked against a stand-in in the unit tier
// (tests/standin/); the real check is the GPU run (scripts/gpu_check.sh).
#pragma once

#include <string>

#include "call_info.hpp"
#include "gradwire/error.hpp"
#include "transport/transport.hpp"

namespace gradwire::detail {

class NcclTransport final : public coll::Transport {
 public:
  // nccl_comm: an ncclComm_t, owned from now on (closed with the transport, or aborted on a
  // failure). Throws gradwire::Error (naming the NCCL rank and `call`) if it cannot start.
  NcclTransport(void* nccl_comm, double timeout_s, const CallInfo& call);
  ~NcclTransport() override;
  int rank() const noexcept override { return rank_; }
  int size() const noexcept override { return size_; }
  int isend(const void* buf, std::size_t bytes, int peer, int tag) override;
  int irecv(void* buf, std::size_t bytes, int peer, int tag) override;
  int iallreduce(void* buf, std::size_t count, coll::Elem t, coll::Reduce op) override;
  int iallgather(const void* send, void* recv, std::size_t bytes) override;
  int iallgatherv(const void* send, std::size_t bytes, void* recv, const int* counts,
                  const int* displs) override;
  int ireduce(const void* send, void* recv, std::size_t count, coll::Elem t, int root) override;
  int ibcast(void* buf, std::size_t bytes, int root) override;
  void group_start() override;
  void group_end() override;
  void abandon_group() noexcept override;
  int test_some(int* done) override;
  void reset() override;
  void* stream() const noexcept override { return stream_; }
  void set_stream(void* s) noexcept { stream_ = s; }  // the next run's (a cudaStream_t)
  // Whether the communicator is still usable (false once a failure aborted it).
  bool live() const noexcept { return comm_ != nullptr; }
  // Closes any open group and aborts the communicator (ncclCommAbort: never waits for peers).
  void abort() noexcept;

 private:
  int enqueued(int rc, const char* what);
  void* comm();  // the communicator, or the error that it was aborted
  void close_groups() noexcept;
  [[noreturn]] void fail(ErrorCode code, const std::string& cause);

  void* comm_;
  void* stream_ = nullptr;
  double timeout_s_;
  int rank_ = 0, size_ = 1, depth_ = 0;
  void* event_ = nullptr;  // recorded after the last enqueue; one completion for the stage
  int posted_ = 0;
  bool reported_ = false;
  CallInfo call_;
};

}  // namespace gradwire::detail
