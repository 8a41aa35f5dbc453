// Command-line flags shared by the osu-style benchmarks. Short letters mean what they mean in
// OSU; nccl-tests' meanings appear only as long options.
#pragma once

#include <cstddef>
#include <string>

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
};

// Parses argv; on -h prints the usage and exits 0; on a bad flag prints the error and usage
// (rank 0 only) and exits 2.
Args parse(int argc, char** argv, const char* name, int rank);

// "4K", "1M", "2G" or a plain number of bytes.
std::size_t parse_size(const std::string& s);

}  // namespace gwbench
