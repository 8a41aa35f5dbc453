// Pinned host staging for device-memory plans whose data goes through host memory
// (docs/compressed-collectives.md, "Device memory"): the buffers are allocated once, at plan
// construction, so a run allocates nothing; copies are enqueued on the caller's stream and
// every wait is bounded by the communicator's timeout (a stuck stream becomes Timeout).
// Without CUDA in the build, prepare() says why and nothing else is reachable.
#pragma once

#include <cstddef>
#include <string>

#include "call_info.hpp"
#include "comm_impl.hpp"

namespace gradwire::detail {

class PinnedStaging {
 public:
  PinnedStaging() = default;
  PinnedStaging(const PinnedStaging&) = delete;
  PinnedStaging& operator=(const PinnedStaging&) = delete;
  ~PinnedStaging() { release(); }

  // Pinned buffers of in_bytes and out_bytes (in_place: one buffer serves both) and one
  // event. Returns "" or why this rank cannot (the plan agrees on it before failing).
  std::string prepare(std::size_t in_bytes, std::size_t out_bytes, bool in_place, int rank);
  void release() noexcept;  // waits for the last copy back, then frees

  void* in() const noexcept { return in_; }
  void* out() const noexcept { return out_; }
  std::size_t in_bytes() const noexcept { return in_bytes_; }
  std::size_t out_bytes() const noexcept { return out_bytes_; }

  // Waits (bounded) for the previous copy back, copies `bytes` of device `src` into the
  // pinned input on `stream` and waits (bounded) for the stream: everything the caller
  // enqueued before, and the copy.
  void down(const void* src, std::size_t bytes, void* stream, const Communicator::Impl& c,
            const CallInfo& call);
  // Enqueues the copy of `bytes` of the pinned output to device `dst` on `stream` and records
  // the event after it; with wait, waits (bounded) for it.
  void up(void* dst, std::size_t bytes, void* stream, bool wait, const Communicator::Impl& c,
          const CallInfo& call);

 private:
  void* in_ = nullptr;
  void* out_ = nullptr;
  std::size_t in_bytes_ = 0, out_bytes_ = 0;
  void* copied_ = nullptr;  // cudaEvent_t recorded after the last copy back
};

// Waits, bounded like the copies, until everything enqueued on `stream` has run (device
// algorithms that keep their data on the GPU: the end of a blocking run).
void wait_stream(void* stream, const Communicator::Impl& c, const CallInfo& call);

}  // namespace gradwire::detail
