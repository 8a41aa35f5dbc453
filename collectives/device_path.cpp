#include "collectives/device_path.hpp"

#include "bounded.hpp"
#include "current_device.hpp"
#include "device_assign.hpp"
#include "gradwire/config.hpp"

#if GRADWIRE_HAVE_CUDA
#include <cuda_runtime.h>

#include "cuda_executor.hpp"
#include "transport/staged_p2p.hpp"
#if defined(OPEN_MPI) && __has_include(<mpi-ext.h>)
#include <mpi-ext.h>  // MPIX_CUDA_AWARE_SUPPORT, MPIX_Query_cuda_support
#endif
#endif
#if GRADWIRE_HAVE_NCCL
#include "device_setup.hpp"
#include "transport/nccl_p2p.hpp"
#endif

namespace gradwire::detail {

#if GRADWIRE_HAVE_CUDA
namespace {

std::uint64_t fnv1a(const char* s, std::size_t n) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (std::size_t i = 0; i < n && s[i]; ++i) h = (h ^ static_cast<unsigned char>(s[i])) * 0x100000001b3ull;
  return h;
}

int cuda_aware_mpi() {
#if defined(MPIX_CUDA_AWARE_SUPPORT) && MPIX_CUDA_AWARE_SUPPORT
  return MPIX_Query_cuda_support() == 1 ? 1 : 0;
#else
  return 0;
#endif
}

}  // namespace

DevicePath::~DevicePath() = default;

void DevicePath::abort() noexcept {
#if GRADWIRE_HAVE_NCCL
  if (auto* n = dynamic_cast<NcclTransport*>(t)) n->abort();
#endif
}

void DevicePath::set_stream(void* stream) {
  static_cast<cuda::CudaExecutor*>(x.get())->set_stream(static_cast<cudaStream_t>(stream));
  if (auto* s = dynamic_cast<StagedTransport*>(t)) s->set_stream(stream);
#if GRADWIRE_HAVE_NCCL
  if (auto* n = dynamic_cast<NcclTransport*>(t)) n->set_stream(stream);
#endif
}

std::uint64_t DevicePath::pcie_bytes() const {
  if (auto* s = dynamic_cast<const StagedTransport*>(t)) return s->pcie_bytes;
  return 0;
}

void DevicePath::zero_counters() {
  t->sent_bytes = 0;
  if (auto* s = dynamic_cast<StagedTransport*>(t)) s->pcie_bytes = 0;
}

int plan_device(const Communicator::Impl& c) {
  if (c.device) return c.device->device();
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) cudaGetLastError();
  return chosen_device(c.options.device, c.local_rank, count);
}

std::unique_ptr<DevicePath> make_device_path(Communicator::Impl& c, const CallInfo& call,
                                             MPI_Comm comm, int max_ops) {
  auto path = std::make_unique<DevicePath>();
  path->device = plan_device(c);
  // Everything made below (the executor's status words, events, pinned memory) belongs to
  // the plan's GPU, whichever device the calling thread had current.
  CurrentDevice on(path->device);
  if (!on.ok()) c.fail(ErrorCode::Cuda, call, on.error());
  // Each rank: (host, GPU) and whether its MPI takes device pointers; gathered, so every rank
  // decides from the same table.
  char host[MPI_MAX_PROCESSOR_NAME] = {0};
  int len = 0;
  MPI_Get_processor_name(host, &len);
  char bus[64] = {0};
  if (cudaDeviceGetPCIBusId(bus, sizeof bus, path->device) != cudaSuccess) cudaGetLastError();
  std::vector<std::uint64_t> mine{fnv1a(host, sizeof host), fnv1a(bus, sizeof bus),
                                  static_cast<std::uint64_t>(cuda_aware_mpi())};
  std::vector<std::uint64_t> all(3 * static_cast<std::size_t>(c.size));
  std::copy(mine.begin(), mine.end(), all.begin() + 3 * c.rank);
  const MPI_Comm cc = c.comm;
  all = bounded_of(c, call, "MPI_Iallgather", all, [cc](void* b, MPI_Request* r) {
    return MPI_Iallgather(MPI_IN_PLACE, 3, MPI_UINT64_T, b, 3, MPI_UINT64_T, cc, r);
  });
  bool shared = false, aware = true;
  for (int i = 0; i < c.size; ++i) {
    aware = aware && all[3 * i + 2] == 1;
    for (int j = 0; j < i; ++j)
      shared = shared || (all[3 * i] == all[3 * j] && all[3 * i + 1] == all[3 * j + 1]);
  }
  path->x = std::make_unique<cuda::CudaExecutor>(nullptr);
#if GRADWIRE_HAVE_NCCL
  if (!shared) {
    DeviceBackend& b = ensure_device(c, call);  // collective, agreed: all ranks get here
    // The plan's own NCCL communicator (collective over c's ranks), then agreed: a rank whose
    // split failed must not leave the others waiting in the first run.
    std::string error;
    std::unique_ptr<NcclTransport> nt;
    if (void* own = b.split_comm(0, c.rank, c.init_timeout_s, error)) {
      try {
        nt = std::make_unique<NcclTransport>(own, c.timeout_s, call);
      } catch (const Error& e) {  // it aborted `own`
        error = e.what();
      }
    }
    const int any = bounded_of(c, call, "MPI_Iallreduce", std::vector<int>{nt ? 0 : 1},
                               [cc](void* v, MPI_Request* r) {
                                 return MPI_Iallreduce(MPI_IN_PLACE, v, 1, MPI_INT, MPI_MAX, cc, r);
                               })[0];
    if (any) {
      if (nt) nt->abort();
      c.fail(ErrorCode::Nccl, call,
             "device plan: ncclCommSplit of the plan's own NCCL communicator failed " +
                 (nt ? std::string("on another rank (see its message)") : "here: " + error));
    }
    path->owned = std::move(nt);
    path->t = path->owned.get();
    path->transport = "nccl";
    return path;
  }
#endif
  (void)shared;  // builds without NCCL: every device plan goes through MPI
  path->owned = std::make_unique<StagedTransport>(comm, max_ops, aware, c, call);
  path->t = path->owned.get();
  path->transport = aware ? "mpi-cuda-aware" : "mpi+staged-compressed";
  return path;
}

#else  // no CUDA: device plans are refused before this is reached

int plan_device(const Communicator::Impl&) { return -1; }
DevicePath::~DevicePath() = default;
void DevicePath::abort() noexcept {}
void DevicePath::set_stream(void*) {}
std::uint64_t DevicePath::pcie_bytes() const { return 0; }
void DevicePath::zero_counters() {}
std::unique_ptr<DevicePath> make_device_path(Communicator::Impl& c, const CallInfo& call, MPI_Comm,
                                             int) {
  c.fail(ErrorCode::Unsupported, call, "device-memory plan: gradwire was built without CUDA");
}

#endif

}  // namespace gradwire::detail
