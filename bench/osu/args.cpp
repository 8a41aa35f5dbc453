#include "args.hpp"

#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include <mpi.h>

namespace gwbench {
namespace {

void usage(const char* name) {
  std::printf(
      "Usage: mpirun -np N %s [options]\n"
      "  -m [MIN:]MAX      message sizes in bytes, K/M/G suffixes, powers of two (default 8:1M)\n"
      "  -i N              timed iterations per size (default 1000, 100 above 8 KiB)\n"
      "  -x N              warmup iterations per size (default 100, 10 above 8 KiB)\n"
      "  -f                full statistics: min and max latency, iterations\n"
      "  -c                validate results (Pass/Fail)\n"
      "  -T TYPE           float | half | bf16 | double | int (default float)\n"
      "  --op OP           sum | avg | min | max | prod (default sum)\n"
      "  --blocking 1|0    1: OSU's barrier-separated calls; 0: nccl-tests' pipelined burst\n"
      "  --json FILE       one JSON record per row\n"
      "  --timeout SEC     deadline of every collective (default 300)\n"
      "  -h                this help\n",
      name);
}

gradwire::DType parse_type(const std::string& s) {
  using gradwire::DType;
  if (s == "float") return DType::Float32;
  if (s == "half") return DType::Float16;
  if (s == "bf16") return DType::BFloat16;
  if (s == "double") return DType::Float64;
  if (s == "int") return DType::Int32;
  throw std::invalid_argument("-T " + s + ": expected float, half, bf16, double or int");
}

gradwire::ReduceOp parse_op(const std::string& s) {
  using gradwire::ReduceOp;
  if (s == "sum") return ReduceOp::Sum;
  if (s == "avg") return ReduceOp::Avg;
  if (s == "min") return ReduceOp::Min;
  if (s == "max") return ReduceOp::Max;
  if (s == "prod") return ReduceOp::Prod;
  throw std::invalid_argument("--op " + s + ": expected sum, avg, min, max or prod");
}

int parse_int(const std::string& flag, const std::string& s) {
  char* end = nullptr;
  const long v = std::strtol(s.c_str(), &end, 10);
  if (end == s.c_str() || *end || v < 0 || v > 100000000) {
    throw std::invalid_argument(flag + " " + s + ": expected a non-negative integer");
  }
  return static_cast<int>(v);
}

}  // namespace

std::size_t parse_size(const std::string& s) {
  char* end = nullptr;
  const unsigned long long v = std::strtoull(s.c_str(), &end, 10);
  if (end == s.c_str()) throw std::invalid_argument("size '" + s + "' is not a number");
  unsigned long long mult = 1;
  const std::string suffix(end);
  if (suffix == "K" || suffix == "k") mult = 1ull << 10;
  else if (suffix == "M" || suffix == "m") mult = 1ull << 20;
  else if (suffix == "G" || suffix == "g") mult = 1ull << 30;
  else if (!suffix.empty()) throw std::invalid_argument("size '" + s + "': unknown suffix");
  return static_cast<std::size_t>(v * mult);
}

Args parse(int argc, char** argv, const char* name, int rank) {
  Args a;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string f = argv[i];
      auto next = [&]() -> std::string {
        if (i + 1 >= argc) throw std::invalid_argument(f + " needs a value");
        return argv[++i];
      };
      if (f == "-h" || f == "--help") {
        if (rank == 0) usage(name);
        MPI_Finalize();
        std::exit(0);
      } else if (f == "-m") {
        const std::string v = next();
        const auto colon = v.find(':');
        if (colon != std::string::npos) {
          a.min_bytes = parse_size(v.substr(0, colon));
          a.max_bytes = parse_size(v.substr(colon + 1));
        } else {
          a.max_bytes = parse_size(v);
        }
        if (a.min_bytes == 0 || a.min_bytes > a.max_bytes)
          throw std::invalid_argument("-m " + v + ": need 0 < MIN <= MAX");
      } else if (f == "-i") {
        a.iterations = parse_int(f, next());
      } else if (f == "-x") {
        a.warmup = parse_int(f, next());
      } else if (f == "-f") {
        a.full = true;
      } else if (f == "-c") {
        a.validate = true;
      } else if (f == "-T") {
        a.dtype = parse_type(next());
      } else if (f == "--op") {
        a.op = parse_op(next());
      } else if (f == "--blocking") {
        const std::string v = next();
        if (v != "0" && v != "1") throw std::invalid_argument("--blocking " + v + ": expected 1 or 0");
        a.blocking = v == "1";
      } else if (f == "--json") {
        a.json = next();
      } else if (f == "--timeout") {
        const std::string v = next();
        a.timeout_s = std::atof(v.c_str());
        if (a.timeout_s <= 0) throw std::invalid_argument("--timeout " + v + ": expected seconds > 0");
      } else {
        throw std::invalid_argument("unknown option '" + f + "'");
      }
    }
  } catch (const std::invalid_argument& e) {
    if (rank == 0) {
      std::fprintf(stderr, "%s: %s\n", name, e.what());
      usage(name);
    }
    MPI_Finalize();
    std::exit(2);
  }
  return a;
}

}  // namespace gwbench
