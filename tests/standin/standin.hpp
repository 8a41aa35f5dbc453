// A link-time stand-in for the few NCCL and CUDA runtime entry points that gradwire's NCCL
// state handling calls (src/transport/nccl_calls.cpp, nccl_p2p.cpp, stream_order.cpp). It
// is NOT NCCL: it acts out the behaviour NCCL 2.28 documents and its source shows (a
// non-blocking split stores the child only when the parent's job ends; a call on a
// communicator in progress; group depth) so the unit tier can check what gradwire does with
// it, on machines without a GPU. Every call is logged in order.
#pragma once

#include <cuda_runtime.h>
#include <nccl.h>

#include <deque>
#include <string>
#include <vector>

struct ncclComm {
  std::string name;
  int rank = 0, size = 2;
  int polls_in_progress = 0;             // GetAsyncError answers ncclInProgress this often more
  ncclResult_t state = ncclSuccess;      // then this
  ncclComm_t* pending_slot = nullptr;    // a split job's: stored when the polls run out
  ncclComm_t pending_child = nullptr;
  bool aborted = false, finalized = false, destroyed = false;
};

namespace standin {

struct World {
  std::vector<std::string> log;
  int group_depth = 0;
  std::deque<ncclResult_t> results;  // answers of the next posts (ncclSend, ...); then success
  int split_polls = 3;               // the parent's ncclInProgress answers during a split
  bool split_refused = false;
  ncclResult_t child_state = ncclSuccess;
  ncclComm_t* last_slot = nullptr;  // where the last split job stores its child
  bool events_ready = true;
  std::vector<ncclComm*> comms;  // every communicator made (freed by reset)
};

World& world();
void reset();
ncclComm_t make_comm(const std::string& name, int rank = 0, int size = 2);
// "legacy", "s<address>" for a stream; "e<n>" for an event.
std::string name_of(cudaStream_t s);
std::string name_of(cudaEvent_t e);
bool logged(const std::string& entry);
// Index of the first log entry equal to `entry`, -1 if none.
int first(const std::string& entry);

}  // namespace standin
