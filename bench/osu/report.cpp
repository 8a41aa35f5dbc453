#include "report.hpp"

#include <gradwire/communicator.hpp>
#include <gradwire/config.hpp>

namespace gwbench {
namespace {

// JSON string body: the few characters a codec spec or a message could hold.
std::string esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    if (static_cast<unsigned char>(c) >= 0x20) o += c;
  }
  return o;
}

// JSON number, or null for "not measured".
std::string num(double v) {
  if (!std::isfinite(v)) return "null";
  char b[64];
  std::snprintf(b, sizeof b, "%.6g", v);
  return b;
}

}  // namespace

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
              header_.uses_op ? std::string(gradwire::op_name(args_.op)).c_str() : "-");
  std::printf("# Codecs: %s   Baseline: %s\n", header_.codec.c_str(), header_.baseline.c_str());
  std::printf("# Ranks: %d   Nodes: %d   Rendezvous: %.3f ms\n", header_.ranks, header_.nodes,
              header_.rendezvous_s * 1e3);
  std::printf("# Timing: %s\n", args_.blocking
                                    ? "blocking (barrier before each call; OSU)"
                                    : "pipelined burst (no barrier between calls; nccl-tests)");
  if (!header_.size_note.empty()) std::printf("# Size: %s\n", header_.size_note.c_str());
  if (header_.bandwidth) {
    std::printf("%-12s%18s", "# Size", "Bandwidth (MB/s)");
  } else {
    std::printf("%-12s%18s", "# Size", "Avg Latency(us)");
  }
  if (args_.full) std::printf("%18s%18s%12s", "Min Latency(us)", "Max Latency(us)", "Iterations");
  std::printf("%14s%14s%14s%18s%10s", "algbw(GB/s)", "busbw(GB/s)", "Wire(B)",
              header_.bandwidth ? "Base BW (MB/s)" : "Base Latency(us)", "vs_base");
  std::printf("%12s%12s%12s%8s", "p50(us)", "p95(us)", "p99(us)", "CV(%)");
  if (args_.validate) std::printf("%12s", "Validation");
  std::printf("  %s\n", "Codec");
  std::fflush(stdout);
}

void Report::row(const Row& r) {
  if (rank_ != 0) return;
  if (!busbw_.count(r.codec)) order_.push_back(r.codec);
  busbw_[r.codec].push_back(r.busbw);
  const double vs = r.avg_us > 0 ? r.base_us / r.avg_us : 0;
  if (header_.bandwidth) {
    std::printf("%-12zu%18.2f", r.bytes, r.avg_us > 0 ? static_cast<double>(r.bytes) / r.avg_us : 0);
  } else {
    std::printf("%-12zu%18.2f", r.bytes, r.avg_us);
  }
  if (args_.full) std::printf("%18.2f%18.2f%12d", r.min_us, r.max_us, r.iterations);
  std::printf("%14.3f%14.3f%14zu%18.2f%10.2f", r.algbw, r.busbw, r.wire,
              header_.bandwidth ? (r.base_us > 0 ? static_cast<double>(r.bytes) / r.base_us : 0)
                                : r.base_us,
              vs);
  std::printf("%12.2f%12.2f%12.2f%8.1f", r.p50_us, r.p95_us, r.p99_us, r.cv_pct);
  if (args_.validate) std::printf("%12s", r.validation.c_str());
  if (r.decision.empty()) {
    std::printf("  %s\n", r.codec.c_str());
  } else {
    std::printf("  %s (auto: %s, %d switch%s)\n", r.codec.c_str(), r.algorithm.c_str(),
                r.switches, r.switches == 1 ? "" : "es");
  }
  std::fflush(stdout);
  if (json_) {
    std::fprintf(json_,
                 "{\"benchmark\":\"%s\",\"codec\":\"%s\",\"algorithm\":\"%s\",\"backend\":\"%s\","
                 "\"memory\":\"%s\",\"dtype\":\"%s\",\"ranks\":%d,\"nodes\":%d,\"size\":%zu,"
                 "\"avg_us\":%s,\"min_us\":%s,\"max_us\":%s,\"iterations\":%d,"
                 "\"algbw\":%s,\"busbw\":%s,\"wire_bytes\":%zu,\"base\":\"%s\",\"base_us\":%s,"
                 "\"vs_base\":%s,\"paired_vs_base\":%s,\"validation\":\"%s\",\"max_rel_err\":%s,"
                 "\"encode_us\":%s,\"transfer_us\":%s,\"decode_us\":%s,\"blocking\":%d,"
                 "\"p50_us\":%s,\"p95_us\":%s,\"p99_us\":%s,\"stdev_us\":%s,\"cv_pct\":%s,"
                 "\"predicted_us\":%s,\"transport\":\"%s\",\"executor\":\"%s\",\"pcie_bytes\":%s,"
                 "\"base_p50_us\":%s,\"decision\":\"%s\",\"switches\":%d,\"predicted_dense_us\":%s,"
                 "\"predicted_compressed_us\":%s,\"measured_dense_us\":%s,"
                 "\"measured_compressed_us\":%s}\n",
                 header_.benchmark.c_str(), esc(r.codec).c_str(), esc(r.algorithm).c_str(),
                 header_.backend.c_str(), header_.memory.c_str(),
                 std::string(gradwire::dtype_name(args_.dtype)).c_str(), header_.ranks,
                 header_.nodes, r.bytes, num(r.avg_us).c_str(), num(r.min_us).c_str(),
                 num(r.max_us).c_str(), r.iterations, num(r.algbw).c_str(), num(r.busbw).c_str(),
                 r.wire, header_.baseline.c_str(), num(r.base_us).c_str(), num(vs).c_str(),
                 num(r.paired_vs_base).c_str(), esc(r.validation).c_str(), num(r.max_rel_err).c_str(), num(r.encode_us).c_str(),
                 num(r.transfer_us).c_str(), num(r.decode_us).c_str(), args_.blocking ? 1 : 0,
                 num(r.p50_us).c_str(), num(r.p95_us).c_str(), num(r.p99_us).c_str(),
                 num(r.stdev_us).c_str(), num(r.cv_pct).c_str(), num(r.predicted_us).c_str(),
                 esc(r.transport).c_str(), esc(r.executor).c_str(), num(r.pcie_bytes).c_str(),
                 num(r.base_p50_us).c_str(), esc(r.decision).c_str(), r.switches, num(r.predicted_dense_us).c_str(),
                 num(r.predicted_compressed_us).c_str(), num(r.measured_dense_us).c_str(),
                 num(r.measured_compressed_us).c_str());
    std::fflush(json_);
  }
}

void Report::end() {
  if (rank_ != 0 || order_.empty()) return;
  for (const std::string& c : order_) {
    double sum = 0;
    for (double b : busbw_[c]) sum += b;
    const double avg = sum / static_cast<double>(busbw_[c].size());
    if (order_.size() == 1) {
      std::printf("# Avg bus bandwidth: %.3f GB/s\n", avg);
    } else {
      std::printf("# Avg bus bandwidth: %.3f GB/s   (%s)\n", avg, c.c_str());
    }
  }
  std::fflush(stdout);
}

}  // namespace gwbench
