// The algorithms' transport for device buffers over MPI (CUDA builds): for ranks that share a
// GPU (no NCCL communicator between them) or an MPI without CUDA support, only the bytes an
// algorithm hands to the transport, i.e. the COMPRESSED messages, cross PCIe: each send is
// copied device -> pinned on the plan's stream and posted to MPI once that copy's event has
// passed; each receive lands in pinned memory and is copied pinned -> device on the stream,
// so the decode kernel enqueued after it sees it. With a CUDA-aware MPI (cuda_aware = true)
// the device pointers go to MPI directly; the events still order MPI after the kernels that
// wrote the data, and receives after the kernels that may still read the buffer. Open MPI
// takes device pointers only in point-to-point and blocking collectives, so the non-blocking
// collectives here are staged through pinned mirrors even then. Mirrors are pinned scratch,
// made when no free one is large enough (the algorithms' buffers are fixed at construction,
// so later runs allocate nothing).
#pragma once

#include <memory>
#include <vector>

#include "call_info.hpp"
#include "comm_impl.hpp"
#include "transport/mpi_p2p.hpp"
#include "transport/transport.hpp"

namespace gradwire::detail {

class StagedTransport final : public coll::Transport {
 public:
  StagedTransport(MPI_Comm comm, int max_ops, bool cuda_aware, const Communicator::Impl& c,
                  const CallInfo& call);
  ~StagedTransport() override;
  int rank() const noexcept override { return inner_.rank(); }
  int size() const noexcept override { return inner_.size(); }
  int isend(const void* buf, std::size_t bytes, int peer, int tag) override;
  int irecv(void* buf, std::size_t bytes, int peer, int tag) override;
  int iallreduce(void* buf, std::size_t count, coll::Elem t, coll::Reduce op) override;
  int iallgather(const void* send, void* recv, std::size_t bytes) override;
  int iallgatherv(const void* send, std::size_t bytes, void* recv, const int* counts,
                  const int* displs) override;
  int ireduce(const void* send, void* recv, std::size_t count, coll::Elem t, int root) override;
  int ibcast(void* buf, std::size_t bytes, int root) override;
  int test_some(int* done) override;
  void reset() override;
  void* stream() const noexcept override { return stream_; }
  void set_stream(void* s) noexcept { stream_ = s; }

  // Bytes copied between device and host memory since the counter was zeroed.
  std::uint64_t pcie_bytes = 0;

 private:
  enum class Kind { Send, Recv, Allreduce, Allgather };
  struct Op {
    Kind kind;
    const void* dev_in = nullptr;  // device data the operation reads (copied down first)
    void* dev_out = nullptr;       // device memory the result goes to (copied up after)
    void* host_in = nullptr;       // what MPI reads / writes: mirrors, or the device pointers
    void* host_out = nullptr;
    std::size_t in_bytes = 0, out_bytes = 0, count = 0;
    int peer = 0, tag = 0, event = -1, inner = -1;
    int out_mirror = -1;  // the mirror MPI writes: posted once its last copy up has passed
    coll::Elem elem{};
    coll::Reduce red{};
    bool posted = false, done = false;
  };
  // A pinned mirror for `dev` (its index in mirrors_): dev's own, else one no operation of
  // this stage uses (nor `taken`), else a new one.
  int mirror(const void* dev, std::size_t bytes, const void* taken = nullptr);
  bool ready(const Op& op);  // its device data is down and its mirror free to write
  void set_out(Op& op, void* dev, std::size_t bytes);
  int add(Op op, bool needs_event);
  void post(Op& op);

  MpiTransport inner_;
  bool cuda_aware_;
  const Communicator::Impl& c_;
  CallInfo call_;
  void* stream_ = nullptr;
  std::vector<void*> events_;  // one per operation of a stage (cudaEvent_t), made up front
  std::vector<Op> ops_;
  std::vector<int> inner_done_;
  struct Mirror {
    const void* dev;
    void* pinned;
    std::size_t bytes;
    void* up = nullptr;  // cudaEvent_t recorded after the last copy up from it
    bool up_recorded = false;
  };
  // As many as one stage uses at once; a free one is taken over for a new buffer.
  std::vector<Mirror> mirrors_;
};

}  // namespace gradwire::detail
