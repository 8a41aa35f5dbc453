// The algorithms' transport over MPI for host buffers (src/transport/transport.hpp). Every call
// posts the non-blocking MPI form on the plan's private communicator; requests live in a
// vector reserved at construction, so posting allocates nothing.
#pragma once

#include <memory>
#include <vector>

#include <mpi.h>

#include "call_info.hpp"
#include "transport/transport.hpp"
#include "comm_impl.hpp"

namespace gradwire::detail {

class MpiTransport final : public coll::Transport {
 public:
  // comm: a communicator this transport may use freely (the plan's duplicate). max_ops: the
  // most operations one stage posts. c and call name errors.
  MpiTransport(MPI_Comm comm, int max_ops, const Communicator::Impl& c, const CallInfo& call);
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
  int test_some(int* done) override;
  void reset() override;

 private:
  MPI_Request* next(const char* what);
  int post(int rc, const char* what);
  // The timeline: when each operation was posted, reported on completion (test_some).
  struct Mark {
    std::int64_t t0 = 0;
    const char* name = "";
    std::uint64_t bytes = 0;
    int peer = -1;
  };
  void mark(const char* name, std::uint64_t bytes, int peer) noexcept;
  std::vector<Mark> marks_;
  std::vector<const char*> to_, from_;  // "send to r", "recv from r"

  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
  std::vector<MPI_Request> reqs_;
  std::vector<int> indices_;
  std::size_t max_ops_;
  const Communicator::Impl& c_;
  CallInfo call_;
};

}  // namespace gradwire::detail
