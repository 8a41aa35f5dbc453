#include "report.hpp"

#include <gradwire/communicator.hpp>
#include <gradwire/config.hpp>

namespace gwbench {

Report::Report(const Args& args, Header header, int rank)
    : args_(args), header_(std::move(header)), rank_(rank) {
  if (rank_ == 0 && !args_.json.empty()) {
    json_ = std::fopen(args_.json.c_str(), "w");
    if (!json_) std::fprintf(stderr, "%s: cannot write %s\n", header_.benchmark.c_str(), args_.json.c_str());
  }
}

Report::~Report() {
  if (json_) std::fclose(json_);
}

void Report::begin() {
  if (rank_ != 0) return;
  std::printf("# %s, %s, OSU-style\n", header_.benchmark.c_str(), gradwire::build_info().c_str());
  std::printf("# Backend: %s   Memory: %s   Datatype: %s   Op: %s\n", header_.backend.c_str(),
              header_.memory.c_str(), std::string(gradwire::dtype_name(args_.dtype)).c_str(),
              std::string(gradwire::op_name(args_.op)).c_str());
  std::printf("# Codec: %s   Baseline: %s\n", header_.codec.c_str(), header_.baseline.c_str());
  std::printf("# Ranks: %d   Nodes: %d   Rendezvous: %.3f ms\n", header_.ranks, header_.nodes,
              header_.rendezvous_s * 1e3);
  std::printf("# Timing: %s\n", args_.blocking
                                    ? "blocking (barrier before each call; OSU)"
                                    : "pipelined burst (no barrier between calls; nccl-tests)");
  std::printf("%-12s%18s", "# Size", "Avg Latency(us)");
  if (args_.full) std::printf("%18s%18s%12s", "Min Latency(us)", "Max Latency(us)", "Iterations");
  std::printf("%14s%14s%14s%18s%10s", "algbw(GB/s)", "busbw(GB/s)", "Wire(B)", "Base Latency(us)",
              "vs_base");
  if (args_.validate) std::printf("%12s", "Validation");
  std::printf("\n");
  std::fflush(stdout);
}

void Report::row(const Row& r) {
  if (rank_ != 0) return;
  busbw_.push_back(r.busbw);
  std::printf("%-12zu%18.2f", r.bytes, r.avg_us);
  if (args_.full) std::printf("%18.2f%18.2f%12d", r.min_us, r.max_us, r.iterations);
  std::printf("%14.3f%14.3f%14zu%18.2f%10.2f", r.algbw, r.busbw, r.wire, r.base_us,
              r.base_us / r.avg_us);
  if (args_.validate) std::printf("%12s", r.validation.c_str());
  std::printf("\n");
  std::fflush(stdout);
  if (json_) {
    std::fprintf(json_,
                 "{\"benchmark\":\"%s\",\"codec\":\"%s\",\"ranks\":%d,\"size\":%zu,"
                 "\"avg_us\":%.3f,\"min_us\":%.3f,\"max_us\":%.3f,\"iterations\":%d,"
                 "\"algbw\":%.4f,\"busbw\":%.4f,\"wire_bytes\":%zu,\"base_us\":%.3f,"
                 "\"vs_base\":%.4f,\"validation\":\"%s\",\"blocking\":%d}\n",
                 header_.benchmark.c_str(), header_.codec.c_str(), header_.ranks, r.bytes, r.avg_us,
                 r.min_us, r.max_us, r.iterations, r.algbw, r.busbw, r.wire, r.base_us,
                 r.base_us / r.avg_us, r.validation.c_str(), args_.blocking ? 1 : 0);
    std::fflush(json_);
  }
}

void Report::end() {
  if (rank_ != 0 || busbw_.empty()) return;
  double sum = 0;
  for (double b : busbw_) sum += b;
  std::printf("# Avg bus bandwidth: %.3f GB/s\n", sum / static_cast<double>(busbw_.size()));
  std::fflush(stdout);
}

}  // namespace gwbench
