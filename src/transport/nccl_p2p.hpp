// The algorithms' transport over NCCL for device buffers (NCCL builds only): ncclSend/ncclRecv
// inside ncclGroupStart/End on the run's stream. Completion is a CUDA event recorded after
// each group. Device plans use it when every rank has its own GPU (collectives/
// device_path.hpp). The NCCL communicator is non-blocking (src/device_setup.cpp): a call that
// answers ncclInProgress is polled to completion, bounded by the communicator's timeout,
// before the next NCCL call. Compiled in CI; run only on a GPU (scripts/gpu_check.sh).
#pragma once

#include <vector>

#include "call_info.hpp"
#include "transport/transport.hpp"
#include "comm_impl.hpp"

namespace gradwire::detail {

class NcclTransport final : public coll::Transport {
 public:
  // nccl_comm: an ncclComm_t; stream: a cudaStream_t. max_ops: the most operations per stage.
  NcclTransport(void* nccl_comm, void* stream, int max_ops, const Communicator::Impl& c,
                const CallInfo& call);
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
  int test_some(int* done) override;
  void reset() override;
  void* stream() const noexcept override { return stream_; }
  void set_stream(void* s) noexcept { stream_ = s; }  // the next run's (a cudaStream_t)

 private:
  int enqueued(int rc, const char* what);

  void* comm_;
  void* stream_;
  int rank_ = 0, size_ = 1, depth_ = 0;
  void* event_ = nullptr;  // recorded after the last enqueue; one completion for the stage
  int posted_ = 0;
  bool reported_ = false;
  const Communicator::Impl& c_;
  CallInfo call_;
};

}  // namespace gradwire::detail
