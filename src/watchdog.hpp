// A process-wide thread that turns a blocking call past its deadline into a message and an
// abort, so that no rank hangs in an MPI call that cannot itself be given a deadline.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>

#include "call_info.hpp"

namespace gradwire::detail {

// One guarded call at a time (a communicator's blocking collectives, a test in the harness).
// arm/disarm are a handful of relaxed atomic stores: cheap enough for an 8-byte allreduce.
class WatchSlot {
 public:
  using Expire = std::function<void(const CallInfo& call, double timeout_s)>;

  // Registers with the watchdog thread; `on_expire` runs on that thread and should not return
  // (it prints and aborts the job).
  explicit WatchSlot(Expire on_expire);
  ~WatchSlot();
  WatchSlot(const WatchSlot&) = delete;
  WatchSlot& operator=(const WatchSlot&) = delete;

  void arm(double timeout_s, const CallInfo& call) noexcept;
  void disarm() noexcept { deadline_ns_.store(0, std::memory_order_release); }

  // Called by the watchdog thread: fires on_expire when the deadline has passed.
  void check(std::int64_t now_ns);
  // Called by the watchdog thread: the earliest time this slot could expire.
  std::int64_t next_check(std::int64_t now_ns) const noexcept;

 private:
  Expire on_expire_;
  std::atomic<std::int64_t> deadline_ns_{0};  // 0: idle
  std::atomic<std::int64_t> timeout_ns_{0};
  std::atomic<std::int64_t> shortest_ns_{INT64_MAX};  // shortest timeout ever armed
  std::atomic<const char*> collective_{""};
  std::atomic<std::size_t> count_{0};
  std::atomic<int> dtype_{0}, op_{-1}, peer_{-1};
};

// RAII: arms a slot for the duration of one blocking call.
class Armed {
 public:
  Armed(WatchSlot& slot, double timeout_s, const CallInfo& call) noexcept : slot_(slot) {
    slot_.arm(timeout_s, call);
  }
  ~Armed() { slot_.disarm(); }
  Armed(const Armed&) = delete;
  Armed& operator=(const Armed&) = delete;

 private:
  WatchSlot& slot_;
};

// Monotonic time for deadlines (coarse: a few milliseconds of resolution).
std::int64_t monotonic_ns() noexcept;
// A timeout in ns, saturating: +infinity (no deadline) and anything above 1e8 s become 1e17 ns
// (about 3 years), so that now + timeout never overflows.
std::int64_t timeout_ns(double seconds) noexcept;

}  // namespace gradwire::detail
