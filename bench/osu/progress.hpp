// Progress of a long sweep, for the scripts that drive one (bench/link/standard_comparison.sh):
// with GW_BENCH_PROGRESS=1, rank 0 writes "gw-progress: ..." lines to stderr (size n of N,
// codec, elapsed, estimated time left); the scripts show them on a terminal and keep them out
// of the logs that OSU parsers read. Unset: nothing is written, the output is as before.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace gwbench {

class Progress {
 public:
  // Work is weighed by bytes (a call's time grows with its size); `total` is the sum of weights.
  Progress(int rank, double total)
      : on_(rank == 0 && std::getenv("GW_BENCH_PROGRESS") &&
            std::strcmp(std::getenv("GW_BENCH_PROGRESS"), "1") == 0),
        total_(total), t0_(std::chrono::steady_clock::now()) {}

  // About to run `what` (size n of N, codec k of K); `weight` is added once it is done.
  void at(int n, int N, std::size_t bytes, int k, int K, const std::string& codec) const {
    if (!on_) return;
    const double el = elapsed();
    char eta[32] = "?";
    if (done_ > 0) std::snprintf(eta, sizeof eta, "%.0f s", el * (total_ - done_) / done_);
    std::fprintf(stderr, "gw-progress: size %d/%d (%zu B), codec %d/%d %s; %.0f s elapsed, ~%s left\n",
                 n, N, bytes, k, K, codec.c_str(), el, eta);
    std::fflush(stderr);
  }
  void done(double weight) { done_ += weight; }

 private:
  double elapsed() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  }
  bool on_;
  double total_, done_ = 0;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace gwbench
