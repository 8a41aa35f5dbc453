// Command-line flags of the trainer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace fm {

struct Args {
  std::string codec = "none";    // gradwire codec spec: none, fp16, q8, q4, q2, sign, topk:0.01
  std::string algo = "auto";     // gradwire plan algorithm: auto, dense, sra, shared-grid, ...
  bool ef = true;                // error feedback for lossy codecs
  int epochs = 10;
  std::size_t batch = 32;        // per rank; the global batch is batch * ranks
  double lr = 0.05;
  double momentum = 0.9;
  double weight_decay = 0.0;
  std::string schedule = "cosine";  // const | cosine (to zero over the run)
  std::uint64_t seed = 1;
  std::size_t train_subset = 0;  // first N training examples; 0 = all 60000
  std::size_t test_subset = 0;   // first N test examples; 0 = all 10000
  std::vector<std::size_t> hidden = {512, 256};
  std::string data_dir;          // empty: Debian's /usr/share/datasets/fashion-mnist
  // abort: a lost rank ends the job. shrink: the survivors shrink the communicator, rebuild
  // the gradient plan (its error feedback carried over), re-shard the data and go on
  // (gradwire built with ULFM, run under mpirun --with-ft ulfm).
  std::string on_failure = "abort";
  int grow_at = 0;  // > 0: at the start of this epoch, every rank grows the job by grow_by
  int grow_by = 0;
  // Library-side DGC options (gradwire::PlanConfig): momentum in the plan, masking, clipping,
  // top-k density warm-up; PowerSGD's rank (--algo powersgd).
  bool plan_momentum = false;    // the optimizer's momentum moves into the plan
  bool masking = true;
  double clip = 0.0;             // local gradient clipping (L2 norm); 0 = off
  double warmup_epochs = 0.0;    // top-k density warm-up
  double warmup_density = 0.25;
  unsigned powersgd_rank = 4;
};

// Parses argv. Returns false after printing usage for --help; throws std::invalid_argument
// naming the flag on a bad or unknown one.
bool parse_args(int argc, char** argv, Args& out);
std::string usage();

}  // namespace fm
