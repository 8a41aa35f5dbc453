// A process-wide thread that turns a blocking call past its deadline into a message and an
// abort, so that no rank hangs in an MPI call that cannot itself be given a deadline.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>

#include "call_info.hpp"

namespace gradwire::detail {

// One guarded call at a time (a communicator's blocking collectives, a test in the harness).
// Arming is a few relaxed stores, inline, with no clock read: the watchdog thread notices an
// arm on its next look and times it from there, so a call ends at most an eighth of the
// shortest timeout (at least 20 ms) after its deadline. At 3-4 ranks on 2 cores, every ns
// before an 8-byte MPI_Allreduce shows in its time (bench/results/auto-never-loses.md).
class WatchSlot {
 public:
  using Expire = std::function<void(const CallInfo& call, double timeout_s)>;

  // Registers with the watchdog thread; `on_expire` runs on that thread and should not return
  // (it prints and aborts the job).
  explicit WatchSlot(Expire on_expire);
  ~WatchSlot();
  WatchSlot(const WatchSlot&) = delete;
  WatchSlot& operator=(const WatchSlot&) = delete;

  void arm(double timeout_s, const CallInfo& call) noexcept {
    collective_.store(call.collective, std::memory_order_relaxed);
    count_.store(call.count, std::memory_order_relaxed);
    dtype_.store(static_cast<int>(call.dtype), std::memory_order_relaxed);
    op_.store(call.op, std::memory_order_relaxed);
    peer_.store(call.peer, std::memory_order_relaxed);
    if (timeout_s != timeout_s_) set_timeout(timeout_s);
    armed_.store(++arms_, std::memory_order_release);
  }
  void disarm() noexcept { armed_.store(0, std::memory_order_release); }

  // Called by the watchdog thread: fires on_expire once an arm it has seen has lasted the
  // timeout.
  void check(std::int64_t now_ns);
  // Called by the watchdog thread: when it should look again.
  std::int64_t next_check(std::int64_t now_ns) const noexcept;

 private:
  void set_timeout(double timeout_s) noexcept;  // and wakes the thread for a shorter one
  Expire on_expire_;
  // The arming thread's: arms so far and the timeout they were given.
  std::uint64_t arms_ = 0;
  double timeout_s_ = -1;
  std::atomic<std::uint64_t> armed_{0};  // the number of the arm in progress; 0: idle
  std::atomic<std::int64_t> timeout_ns_{0};
  std::atomic<std::int64_t> shortest_ns_{INT64_MAX};  // shortest timeout ever armed
  std::atomic<const char*> collective_{""};
  std::atomic<std::size_t> count_{0};
  std::atomic<int> dtype_{0}, op_{-1}, peer_{-1};
  // The watchdog thread's: the arm it saw last and when it first saw it (INT64_MAX: fired).
  std::uint64_t seen_ = 0;
  std::int64_t seen_at_ns_ = 0;
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
