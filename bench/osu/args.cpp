#include "args.hpp"

#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include <mpi.h>

#include <gradwire/codec.hpp>
#include <gradwire/error.hpp>

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
      "  -d host|cuda      buffer memory (default host; cuda needs a CUDA build and a GPU)\n"
      "  --backend B       mpi | nccl | auto: the engine of the dense path and the baseline\n"
      "                    (auto: mpi for host memory, nccl for cuda)\n"
      "  --codec SPEC      codec of gradwire's path (default none: the dense engine call);\n"
      "                    repeatable, one sweep then compares several. SPEC[@ALGO][+ef|+noef]\n"
      "                    [+overlap] (+overlap: the chunked pipeline, GRADWIRE_OVERLAP=1),\n"
      "                    e.g. --codec q8 --codec q4@shared-grid --codec topk:0.01+ef\n"
      "  --algo A          auto | dense | sra | shared-grid | sparse-allgather | hier\n"
      "  --ef on|off       error feedback of lossy codecs (default on)\n"
      "  --control         one more row: the baseline timed again as if it were a codec\n"
      "                    (its ratio is what noise alone does)\n"
      "  -W N              gw_bw: window of messages in flight (default 64)\n"
      "  -h                this help\n"
      "Columns: Size (logical, uncompressed bytes), Avg Latency(us) [Min, Max, Iterations with -f],\n"
      "algbw/busbw (nccl-tests' factors), Wire(B) sent per rank, the baseline's latency in the\n"
      "blocks timed beside the row and vs_base (its speedup over it); with -c Validation:\n"
      "Pass/Fail for exact paths, the max error relative to max|float64 result| for lossy ones.\n"
      "Exit status is non-zero on every rank after a failed validation, a timeout or an error on\n"
      "any rank.\n",
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
      } else if (f == "-d") {
        a.device = next();
        if (a.device != "host" && a.device != "cuda")
          throw std::invalid_argument("-d " + a.device + ": expected host or cuda");
      } else if (f == "--backend") {
        a.backend = next();
        if (a.backend != "mpi" && a.backend != "nccl" && a.backend != "auto")
          throw std::invalid_argument("--backend " + a.backend + ": expected mpi, nccl or auto");
      } else if (f == "--codec") {
        a.codecs.push_back(next());
      } else if (f == "--algo") {
        a.algo = next();
      } else if (f == "--ef") {
        const std::string v = next();
        if (v != "on" && v != "off") throw std::invalid_argument("--ef " + v + ": expected on or off");
        a.ef = v == "on";
      } else if (f == "--control") {
        a.control = true;
      } else if (f == "-W") {
        a.window = parse_int(f, next());
        if (a.window < 1) throw std::invalid_argument("-W: expected at least 1");
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
  if (a.backend == "auto") a.backend = a.device == "cuda" ? "nccl" : "mpi";
  if (a.backend == "nccl" && a.device != "cuda") {
    if (rank == 0) std::fprintf(stderr, "%s: --backend nccl needs -d cuda\n", name);
    MPI_Finalize();
    std::exit(2);
  }
  return a;
}

std::vector<CodecChoice> codec_choices(const Args& a) {
  std::vector<CodecChoice> out;
  const std::vector<std::string> given = a.codecs.empty() ? std::vector<std::string>{"none"} : a.codecs;
  for (const std::string& g : given) {
    CodecChoice c;
    c.label = g;
    c.algo = a.algo;
    c.ef = a.ef;
    std::string s = g;
    for (;;) {
      if (s.size() > 3 && s.compare(s.size() - 3, 3, "+ef") == 0) {
        c.ef = true;
        s.resize(s.size() - 3);
      } else if (s.size() > 5 && s.compare(s.size() - 5, 5, "+noef") == 0) {
        c.ef = false;
        s.resize(s.size() - 5);
      } else if (s.size() > 8 && s.compare(s.size() - 8, 8, "+overlap") == 0) {
        c.overlap = true;
        s.resize(s.size() - 8);
      } else {
        break;
      }
    }
    const auto at = s.find('@');
    if (at != std::string::npos) {
      c.algo = s.substr(at + 1);
      s.resize(at);
    }
    c.spec = s.empty() ? "none" : s;
    out.push_back(c);
  }
  if (a.control) {
    CodecChoice c;
    c.label = "control";
    c.spec = "none";
    c.algo = "baseline";
    out.push_back(c);
  }
  return out;
}

std::string codec_spec_error(const CodecChoice& c) {
  try {
    (void)gradwire::parse_codec(c.spec);
  } catch (const gradwire::Error& e) {
    return "--codec " + c.label + ": " + e.what();
  }
  return "";
}

}  // namespace gwbench
