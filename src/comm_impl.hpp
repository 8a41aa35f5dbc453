// The state behind gradwire::Communicator, shared by its requests and by the layers above.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <mpi.h>

#include "call_info.hpp"
#include "fault/ulfm.hpp"
#include "gradwire/communicator.hpp"
#include "progress_board.hpp"
#include "watchdog.hpp"

namespace gradwire::detail {
class DeviceBackend;
}

namespace gradwire {

struct Communicator::Impl {
  Impl(MPI_Comm parent, const Options& options);
  ~Impl();

  MPI_Comm comm = MPI_COMM_NULL;     // private duplicate of the caller's communicator
  MPI_Comm local = MPI_COMM_NULL;    // ranks of this node
  MPI_Comm leaders = MPI_COMM_NULL;  // local rank 0 of each node, else MPI_COMM_NULL
  int rank = 0, size = 1, local_rank = 0, local_size = 1, node = 0, node_count = 1;
  double rendezvous_s = 0;
  double timeout_s = 300;
  double init_timeout_s = 300;  // rendezvous and device setup (GRADWIRE_INIT_TIMEOUT)
  OnTimeout policy = OnTimeout::Abort;
  Options options;
  bool finalized = false;
  bool cuda_present = false;  // the CUDA runtime sees a device on this host
  std::unique_ptr<detail::DeviceBackend> device;  // made lazily (src/device_setup.hpp)
  // Why the device setup failed, agreed by every rank; later device calls fail with it at once.
  std::string device_failure;
  ErrorCode device_failure_code = ErrorCode::Internal;
  // Collectives whose blocking call timed out with OnTimeout::Return: MPI may still use their
  // buffers, so they live until the communicator does.
  std::vector<std::unique_ptr<Request::State>> orphans;
  // Checked mode (Options::check, GRADWIRE_CHECK): every collective first agrees on its
  // arguments (src/check.cpp).
  bool checked = false;
  // A request was abandoned unfinished, or MPI reported an error on `comm`: peers may still
  // send on it, so it is never freed (freeing it let a later communicator reuse its context
  // and crash in MPI).
  mutable bool pending_leaked = false;
  std::uint64_t plans_made = 0;  // plan ids, in construction order (the same on every rank)
  detail::ProgressBoard board;   // names the culprit of a timeout (progress_board.hpp)
  detail::WatchSlot watch;
  std::unique_ptr<detail::FaultState> fault;  // the failure policy and what has died
  bool timeline_owner = false;  // this communicator opened the process's timeline (closes it)
  // Elastic membership (src/fault/elastic.hpp): set by respawn()/grow() on every rank.
  bool joined = false;             // this process was started by a respawn()/grow()
  std::uint64_t resume_step = 0;   // the agreed step of the last membership change
  int state_root = 0;              // share_state()'s source rank

  // Error helpers: every message names this rank, the call and the cause.
  [[noreturn]] void fail(ErrorCode code, const detail::CallInfo& call,
                         const std::string& cause) const;
  // Prints `message`, aborts NCCL, then the MPI job. Never returns.
  [[noreturn]] void abort_job(const std::string& message) const noexcept;
  // A wait passed its deadline: abort the job, or throw Error(Timeout).
  [[noreturn]] void timed_out(const detail::CallInfo& call, OnTimeout how) const;
  // Inline, the failure out of line: every collective's hot path passes here.
  void check_mpi(int rc, const detail::CallInfo& call, const char* what) const {
    if (rc != MPI_SUCCESS) [[unlikely]] mpi_failed(rc, call, what);
  }
  [[noreturn, gnu::cold]] void mpi_failed(int rc, const detail::CallInfo& call, const char* what) const;
  void orphan(std::unique_ptr<Request::State> st) noexcept;
  // "; rank 3 is stopped (SIGSTOP)" and the like, for timeout messages; "" when unknown.
  std::string culprits(const detail::CallInfo& call) const;
  void attach_progress_board();
  void release() noexcept;
};

}  // namespace gradwire
