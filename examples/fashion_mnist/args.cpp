#include "args.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <stdexcept>

#include "idx.hpp"

namespace fm {
namespace {

[[noreturn]] void bad(const std::string& flag, const std::string& value, const char* want) {
  throw std::invalid_argument(flag + ": '" + value + "' is not " + want);
}

std::uint64_t to_u64(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  errno = 0;
  const unsigned long long x = std::strtoull(v.c_str(), &end, 10);
  if (v.empty() || v[0] == '-' || *end != '\0' || errno != 0) bad(flag, v, "a whole number >= 0");
  return x;
}

double to_double(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0' || !(x >= 0) || x > 1e9) bad(flag, v, "a number >= 0");
  return x;
}

std::vector<std::size_t> to_sizes(const std::string& flag, const std::string& v) {
  std::vector<std::size_t> out;
  std::size_t start = 0;
  while (start <= v.size()) {
    const std::size_t comma = std::min(v.find(',', start), v.size());
    const std::uint64_t x = to_u64(flag, v.substr(start, comma - start));
    if (x == 0 || x > 65536) bad(flag, v, "a list of layer widths in [1, 65536] like 512,256");
    out.push_back(x);
    start = comma + 1;
  }
  return out;
}

}  // namespace

std::string usage() {
  return "usage: mpirun -np N fashion_mnist [flags]\n"
         "  --codec SPEC        gradient codec: none fp16 bf16 q8 q4 q2 sign topk:0.01 ... "
         "(none)\n"
         "  --algo NAME         plan algorithm: auto dense sra shared-grid sparse-allgather "
         "hier (auto)\n"
         "  --ef on|off         error feedback for lossy codecs (on)\n"
         "  --epochs N          (10)\n"
         "  --batch N           examples per rank per step; global batch = N * ranks (32)\n"
         "  --lr X              peak learning rate (0.05)\n"
         "  --momentum X        (0.9)\n"
         "  --wd X              L2 weight decay (0)\n"
         "  --schedule S        const | cosine: lr decays to 0 over the run (cosine)\n"
         "  --seed N            initial weights, shuffling, stochastic rounding (1)\n"
         "  --train-subset N    use the first N training examples; 0 = all 60000 (0)\n"
         "  --test-subset N     evaluate on the first N test examples; 0 = all 10000 (0)\n"
         "  --hidden W1,W2,...  hidden layer widths (512,256)\n"
         "  --on-failure P      abort | shrink: go on with the survivors when a rank dies |\n"
         "                      respawn: and start a replacement that joins (needs gradwire\n"
         "                      with ULFM and mpirun --with-ft ulfm) (abort)\n"
         "  --grow EPOCH:N      at the start of EPOCH, start N more ranks that join (gradwire\n"
         "                      with ULFM, mpirun --with-ft ulfm) (off)\n"
         "  --data-dir DIR      the gzipped IDX files (" +
         std::string(kDefaultDataDir) + ")\n"
         "  --plan-momentum on|off  keep the momentum in the gradwire plan (DGC momentum\n"
         "                      correction; the optimizer then adds none) (off)\n"
         "  --masking on|off    DGC momentum factor masking, with --plan-momentum (on)\n"
         "  --clip X            DGC local gradient clipping to L2 norm X; 0 = off (0)\n"
         "  --warmup-epochs X   top-k: DGC density warm-up over X epochs (0)\n"
         "  --warmup-density D  top-k: density at the first step of the warm-up (0.25)\n"
         "  --powersgd-rank R   rank of --algo powersgd's factors, per layer matrix (4)\n";
}

bool parse_args(int argc, char** argv, Args& a) {
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "-h" || flag == "--help") return false;
    if (i + 1 >= argc) throw std::invalid_argument(flag + ": unknown flag or missing value");
    const std::string v = argv[++i];
    if (flag == "--codec") {
      a.codec = v;
    } else if (flag == "--algo") {
      a.algo = v;
    } else if (flag == "--ef") {
      if (v != "on" && v != "off") bad(flag, v, "on or off");
      a.ef = v == "on";
    } else if (flag == "--epochs") {
      const std::uint64_t e = to_u64(flag, v);
      if (e < 1 || e > 10000) bad(flag, v, "in [1, 10000]");
      a.epochs = static_cast<int>(e);
    } else if (flag == "--batch") {
      a.batch = to_u64(flag, v);
      if (a.batch < 1 || a.batch > 65536) bad(flag, v, "in [1, 65536]");
    } else if (flag == "--lr") {
      a.lr = to_double(flag, v);
    } else if (flag == "--momentum") {
      a.momentum = to_double(flag, v);
      if (a.momentum >= 1) bad(flag, v, "in [0, 1)");
    } else if (flag == "--wd") {
      a.weight_decay = to_double(flag, v);
    } else if (flag == "--schedule") {
      if (v != "const" && v != "cosine") bad(flag, v, "const or cosine");
      a.schedule = v;
    } else if (flag == "--seed") {
      a.seed = to_u64(flag, v);
    } else if (flag == "--train-subset") {
      a.train_subset = to_u64(flag, v);
    } else if (flag == "--test-subset") {
      a.test_subset = to_u64(flag, v);
    } else if (flag == "--hidden") {
      a.hidden = to_sizes(flag, v);
    } else if (flag == "--grow") {
      // EPOCH:N
      const std::size_t colon = v.find(':');
      if (colon == std::string::npos) bad(flag, v, "EPOCH:N");
      const std::uint64_t e = to_u64(flag, v.substr(0, colon));
      const std::uint64_t n = to_u64(flag, v.substr(colon + 1));
      if (e < 1 || e > 10000 || n < 1 || n > 1024) bad(flag, v, "EPOCH in [1, 10000], N in [1, 1024]");
      a.grow_at = static_cast<int>(e);
      a.grow_by = static_cast<int>(n);
    } else if (flag == "--on-failure") {
      if (v != "abort" && v != "shrink" && v != "respawn") bad(flag, v, "abort, shrink or respawn");
      a.on_failure = v;
    } else if (flag == "--plan-momentum" || flag == "--masking") {
      if (v != "on" && v != "off") bad(flag, v, "on or off");
      (flag == "--masking" ? a.masking : a.plan_momentum) = v == "on";
    } else if (flag == "--clip") {
      a.clip = to_double(flag, v);
    } else if (flag == "--warmup-epochs") {
      a.warmup_epochs = to_double(flag, v);
    } else if (flag == "--warmup-density") {
      a.warmup_density = to_double(flag, v);
      if (a.warmup_density <= 0 || a.warmup_density > 1) bad(flag, v, "in (0, 1]");
    } else if (flag == "--powersgd-rank") {
      const std::uint64_t r = to_u64(flag, v);
      if (r < 1 || r > 256) bad(flag, v, "in [1, 256]");
      a.powersgd_rank = static_cast<unsigned>(r);
    } else if (flag == "--data-dir") {
      a.data_dir = v;
    } else {
      throw std::invalid_argument(flag + ": unknown flag (--help lists them)");
    }
  }
  return true;
}

}  // namespace fm
