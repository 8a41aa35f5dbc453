// Command-line flags shared by the osu-style benchmarks. Short letters mean what they mean in
// OSU; nccl-tests' meanings appear only as long options.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <gradwire/types.hpp>

namespace gwbench {

struct Args {
  std::size_t min_bytes = 8;          // -m MIN:MAX
  std::size_t max_bytes = 1 << 20;
  int iterations = -1;                // -i; -1: OSU's defaults by size
  int warmup = -1;                    // -x
  bool full = false;                  // -f: min, max and iteration count
  bool validate = false;              // -c
  gradwire::DType dtype = gradwire::DType::Float32;  // -T float|half|bf16|double|int
  gradwire::ReduceOp op = gradwire::ReduceOp::Sum;   // --op
  bool blocking = true;               // --blocking 1 (OSU) | 0 (nccl-tests burst)
  std::string json;                   // --json FILE
  double timeout_s = 300;             // --timeout
  std::string device = "host";        // -d host|cuda
  std::string backend = "auto";       // --backend mpi|nccl|auto (auto: mpi for host, nccl for cuda)
  // --codec SPEC, repeatable; empty means {"none"}. A spec may end in "@ALGO" (that codec's
  // algorithm, overriding --algo) and "+ef" / "+noef" (overriding --ef), e.g. "q4@shared-grid",
  // "topk:0.01+ef".
  std::vector<std::string> codecs;
  std::string algo = "auto";          // --algo: a PlanConfig algorithm
  bool ef = true;                     // --ef on|off: error feedback of lossy codecs
  int window = 64;                    // gw_bw: messages in flight per window (OSU -W)
  bool control = false;               // --control: the baseline again, as a row (A/A)
};

// One --codec entry, split into its parts.
struct CodecChoice {
  std::string label;   // as given, e.g. "q4@shared-grid"
  std::string spec;    // the codec spec, e.g. "q4"
  std::string algo;    // "auto", "dense", "sra", "shared-grid", ...
  bool ef = true;
  bool overlap = false;  // "+overlap": the plan built with GRADWIRE_OVERLAP=1 (pipelined)
  bool dense() const { return spec == "none" && (algo == "auto" || algo == "dense"); }
  bool control() const { return algo == "baseline"; }  // --control
};
std::vector<CodecChoice> codec_choices(const Args& a);
// "" when the choice's codec spec parses, else "--codec LABEL: <why>".
std::string codec_spec_error(const CodecChoice& c);

// Parses argv; on -h prints the usage and exits 0; on a bad flag prints the error and usage
// (rank 0 only) and exits 2.
Args parse(int argc, char** argv, const char* name, int rank);

// "4K", "1M", "2G" or a plain number of bytes.
std::size_t parse_size(const std::string& s);

}  // namespace gwbench
