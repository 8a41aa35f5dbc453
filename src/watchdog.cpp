#include "watchdog.hpp"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace gradwire::detail {
namespace {

// The thread runs while at least one slot exists. Arming does not tell it (WatchSlot::arm reads
// no clock): it looks at the slots every eighth of the shortest timeout any slot has been
// armed with, and an arm expires a timeout after the look that first saw it. A call therefore
// ends between its deadline and an eighth of its timeout (at least 20 ms, the shortest sleep)
// after it. With the default 300 s deadlines the thread wakes every 37.5 s, not 50 times a
// second: on oversubscribed cores each wakeup can preempt a rank that is spinning in MPI
// (issue 15's suspect for the dense path's overhead at 4 ranks on 2 cores). A slot armed with
// a shorter timeout than ever before wakes it, so that the new eighth applies at once.
class Watchdog {
 public:
  // Never destroyed: slots owned by other statics may unregister during exit.
  static Watchdog& instance() {
    static Watchdog* w = new Watchdog;
    return *w;
  }

  void add(WatchSlot* s) {
    std::unique_lock lock(mu_);
    slots_.push_back(s);
    if (!thread_.joinable()) {
      stop_ = false;
      thread_ = std::thread([this] { run(); });
    }
  }

  // A slot's shortest timeout went down: recompute the next wakeup now. Taking the mutex
  // orders this against the thread's compute-then-wait, so the wakeup is never lost.
  void wake() {
    { std::lock_guard lock(mu_); }
    cv_.notify_all();
  }

  void remove(WatchSlot* s) {
    std::thread finished;
    {
      std::unique_lock lock(mu_);
      slots_.erase(std::remove(slots_.begin(), slots_.end(), s), slots_.end());
      if (slots_.empty() && thread_.joinable()) {
        stop_ = true;
        finished = std::move(thread_);
      }
    }
    cv_.notify_all();
    if (finished.joinable()) finished.join();
  }

 private:
  void run() {
    constexpr std::int64_t kMinSleep = 20'000'000, kMaxSleep = 60'000'000'000;
    std::unique_lock lock(mu_);
    while (!stop_) {
      const std::int64_t now = monotonic_ns();
      std::int64_t next = now + kMaxSleep;
      for (WatchSlot* s : slots_) {
        s->check(now);
        next = std::min(next, s->next_check(now));
      }
      next = std::max(next, now + kMinSleep);
      cv_.wait_for(lock, std::chrono::nanoseconds(next - now));
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<WatchSlot*> slots_;
  std::thread thread_;
  bool stop_ = false;
};

}  // namespace

// The coarse clock (a few ms of resolution, ample for deadlines of seconds) costs ~5 ns; the
// precise one cost 80-140 ns per read on our VMs, most of gradwire's overhead on an 8-byte
// allreduce (bench/results/allreduce-targets.md).
std::int64_t monotonic_ns() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

std::int64_t timeout_ns(double seconds) noexcept {
  if (!(seconds > 0)) return 0;
  if (seconds >= 1e8) return 100'000'000'000'000'000;
  return static_cast<std::int64_t>(seconds * 1e9);
}

WatchSlot::WatchSlot(Expire on_expire) : on_expire_(std::move(on_expire)) {
  Watchdog::instance().add(this);
}

WatchSlot::~WatchSlot() { Watchdog::instance().remove(this); }

void WatchSlot::set_timeout(double timeout_s) noexcept {
  timeout_s_ = timeout_s;
  const std::int64_t to_ns = detail::timeout_ns(timeout_s);
  timeout_ns_.store(to_ns, std::memory_order_relaxed);
  if (to_ns < shortest_ns_.load(std::memory_order_relaxed)) {
    shortest_ns_.store(to_ns, std::memory_order_relaxed);
    Watchdog::instance().wake();
  }
}

std::int64_t WatchSlot::next_check(std::int64_t now_ns) const noexcept {
  // An arm not seen yet is seen within an eighth of the shortest timeout.
  const std::int64_t shortest = shortest_ns_.load(std::memory_order_relaxed);
  std::int64_t next = shortest / 8 > INT64_MAX - now_ns ? INT64_MAX : now_ns + shortest / 8;
  if (seen_ != 0 && seen_at_ns_ != INT64_MAX) {
    const std::int64_t timeout = timeout_ns_.load(std::memory_order_relaxed);
    if (timeout <= INT64_MAX - seen_at_ns_) next = std::min(next, seen_at_ns_ + timeout);
  }
  return next;
}

void WatchSlot::check(std::int64_t now_ns) {
  const std::uint64_t arm = armed_.load(std::memory_order_acquire);
  if (arm != seen_) {
    seen_ = arm;
    seen_at_ns_ = now_ns;
    return;
  }
  const std::int64_t timeout = timeout_ns_.load(std::memory_order_relaxed);
  if (arm == 0 || seen_at_ns_ == INT64_MAX || now_ns - seen_at_ns_ < timeout) return;
  CallInfo call;
  call.collective = collective_.load(std::memory_order_relaxed);
  call.count = count_.load(std::memory_order_relaxed);
  call.dtype = static_cast<DType>(dtype_.load(std::memory_order_relaxed));
  call.op = op_.load(std::memory_order_relaxed);
  call.peer = peer_.load(std::memory_order_relaxed);
  // Disarmed or re-armed while we read: that call's fields are not this one's.
  if (armed_.load(std::memory_order_acquire) != arm) return;
  seen_at_ns_ = INT64_MAX;  // once per arm
  on_expire_(call, static_cast<double>(timeout) * 1e-9);
}

}  // namespace gradwire::detail
