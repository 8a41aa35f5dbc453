#include "standin.hpp"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <sstream>

struct CUevent_st {
  int id;
};

namespace standin {

World& world() {
  static World w;
  return w;
}

void reset() {
  for (ncclComm* c : world().comms) delete c;
  world() = World{};
}

ncclComm_t make_comm(const std::string& name, int rank, int size) {
  auto* c = new ncclComm;
  c->name = name;
  c->rank = rank;
  c->size = size;
  world().comms.push_back(c);
  return c;
}

std::string name_of(cudaStream_t s) {
  if (s == cudaStreamLegacy) return "legacy";
  std::ostringstream o;
  o << "s" << reinterpret_cast<std::uintptr_t>(s);
  return o.str();
}

std::string name_of(cudaEvent_t e) {
  std::string s = "e";  // appended, not "e" + ...: GCC 12 at -O3 warns falsely on that form
  s += e ? std::to_string(e->id) : "?";
  return s;
}

bool logged(const std::string& entry) { return first(entry) >= 0; }

int first(const std::string& entry) {
  const auto& l = world().log;
  const auto it = std::find(l.begin(), l.end(), entry);
  return it == l.end() ? -1 : static_cast<int>(it - l.begin());
}

namespace {

void log(const std::string& s) { world().log.push_back(s); }

std::string comm_name(ncclComm_t c) { return c ? c->name : "null"; }

ncclResult_t post(const char* what, ncclComm_t comm) {
  log(std::string(what) + "(" + comm_name(comm) + (world().group_depth ? ", in group)" : ")"));
  if (world().results.empty()) return ncclSuccess;
  const ncclResult_t r = world().results.front();
  world().results.pop_front();
  if (r == ncclInProgress) comm->polls_in_progress = INT_MAX;  // stays in progress
  return r;
}

}  // namespace
}  // namespace standin

using standin::world;

// ---- NCCL ---------------------------------------------------------------------------------

ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* asyncError) {
  standin::world().log.push_back("GetAsyncError(" + comm->name + ")");
  if (comm->polls_in_progress > 0) {
    if (comm->polls_in_progress != INT_MAX) --comm->polls_in_progress;
    *asyncError = ncclInProgress;
    return ncclSuccess;
  }
  if (comm->pending_slot) {  // the split job ends: it stores the child, as NCCL's does
    *comm->pending_slot = comm->pending_child;
    comm->pending_slot = nullptr;
    standin::world().log.push_back("job stored child of " + comm->name);
  }
  *asyncError = comm->state;
  return ncclSuccess;
}

const char* ncclGetLastError(ncclComm_t) { return ""; }
const char* ncclGetErrorString(ncclResult_t r) {
  switch (r) {
    case ncclSuccess: return "no error";
    case ncclInProgress: return "in progress";
    case ncclInternalError: return "internal error";
    case ncclInvalidUsage: return "invalid usage";
    default: return "stand-in error";
  }
}

ncclResult_t ncclCommSplit(ncclComm_t comm, int color, int key, ncclComm_t* newcomm,
                           ncclConfig_t* config) {
  standin::world().log.push_back("CommSplit(" + comm->name + ", blocking=" +
                                 std::to_string(config ? config->blocking : -1) + ")");
  *newcomm = nullptr;  // "should be NCCL_COMM_NULL until comm split fully complete"
  if (world().split_refused) return ncclInvalidArgument;
  ncclComm_t child = standin::make_comm("child", key, comm->size);
  (void)color;
  child->state = world().child_state;
  comm->pending_slot = newcomm;
  comm->pending_child = child;
  comm->polls_in_progress = world().split_polls;
  world().last_slot = newcomm;
  return ncclInProgress;
}

ncclResult_t ncclCommAbort(ncclComm_t comm) {
  standin::world().log.push_back("CommAbort(" + std::string(comm ? comm->name : "null") + ")");
  if (!comm) return ncclSuccess;
  comm->aborted = true;
  if (comm->pending_slot) {  // the job is stopped; it stores what it made on its way out
    *comm->pending_slot = comm->pending_child;
    comm->pending_slot = nullptr;
  }
  comm->polls_in_progress = 0;
  return ncclSuccess;
}

ncclResult_t ncclCommFinalize(ncclComm_t comm) {
  standin::world().log.push_back("CommFinalize(" + comm->name + ")");
  comm->finalized = true;
  return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  standin::world().log.push_back("CommDestroy(" + comm->name + ")");
  comm->destroyed = true;
  return ncclSuccess;
}

ncclResult_t ncclCommUserRank(const ncclComm_t comm, int* rank) {
  standin::world().log.push_back("CommUserRank(" + comm->name + ")");
  *rank = comm->rank;
  return ncclSuccess;
}

ncclResult_t ncclCommCount(const ncclComm_t comm, int* count) {
  *count = comm->size;
  return ncclSuccess;
}

ncclResult_t ncclGroupStart() {
  ++world().group_depth;
  standin::world().log.push_back("GroupStart");
  return ncclSuccess;
}

ncclResult_t ncclGroupEnd() {
  if (world().group_depth == 0) return ncclInvalidUsage;
  --world().group_depth;
  standin::world().log.push_back("GroupEnd");
  return ncclSuccess;
}

ncclResult_t ncclSend(const void*, size_t, ncclDataType_t, int, ncclComm_t comm, cudaStream_t) {
  return standin::post("Send", comm);
}
ncclResult_t ncclRecv(void*, size_t, ncclDataType_t, int, ncclComm_t comm, cudaStream_t) {
  return standin::post("Recv", comm);
}
ncclResult_t ncclAllReduce(const void*, void*, size_t, ncclDataType_t, ncclRedOp_t,
                           ncclComm_t comm, cudaStream_t) {
  return standin::post("AllReduce", comm);
}
ncclResult_t ncclAllGather(const void*, void*, size_t, ncclDataType_t, ncclComm_t comm,
                           cudaStream_t) {
  return standin::post("AllGather", comm);
}
ncclResult_t ncclReduce(const void*, void*, size_t, ncclDataType_t, ncclRedOp_t, int,
                        ncclComm_t comm, cudaStream_t) {
  return standin::post("Reduce", comm);
}
ncclResult_t ncclBroadcast(const void*, void*, size_t, ncclDataType_t, int, ncclComm_t comm,
                           cudaStream_t) {
  return standin::post("Broadcast", comm);
}

// ---- CUDA runtime -------------------------------------------------------------------------

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int) {
  static int next = 0;
  *event = new CUevent_st{++next};
  return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  delete event;
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  standin::world().log.push_back("EventRecord(" + standin::name_of(event) + ", " +
                                 standin::name_of(stream) + ")");
  return cudaSuccess;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int) {
  standin::world().log.push_back("StreamWaitEvent(" + standin::name_of(stream) + ", " +
                                 standin::name_of(event) + ")");
  return cudaSuccess;
}

cudaError_t cudaEventQuery(cudaEvent_t) {
  return world().events_ready ? cudaSuccess : cudaErrorNotReady;
}

cudaError_t cudaMemcpyAsync(void*, const void*, size_t, cudaMemcpyKind, cudaStream_t stream) {
  standin::world().log.push_back("MemcpyAsync(" + standin::name_of(stream) +
                                 (world().group_depth ? ", in group)" : ")"));
  return cudaSuccess;
}

cudaError_t cudaGetLastError() { return cudaSuccess; }
const char* cudaGetErrorString(cudaError_t) { return "stand-in CUDA error"; }
