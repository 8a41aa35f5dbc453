// The table every osu-style benchmark prints: OSU's columns first (so OSU parsers read it),
// then nccl-tests' bandwidths, the bytes on the wire, and the plain engine's latency beside
// gradwire's.
#pragma once

#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "args.hpp"
#include "timing.hpp"

namespace gwbench {

struct Header {
  std::string benchmark;   // "gw_allreduce"
  std::string backend;     // "mpi"
  std::string memory;      // "host"
  std::string codec;       // "none", or "none, q8, q4@shared-grid" for a comparison
  std::string baseline;    // "MPI_Allreduce"
  std::string size_note;   // what Size counts, e.g. "bytes per rank (OSU)"
  bool uses_op = true;     // reductions print their op; the others print "-"
  bool bandwidth = false;  // gw_bw: the second column is OSU's "Bandwidth (MB/s)"
  int ranks = 1, nodes = 1;
  double rendezvous_s = 0;
};

struct Row {
  std::size_t bytes = 0;     // logical, uncompressed size (the Size column)
  double avg_us = 0, min_us = 0, max_us = 0;
  int iterations = 0;
  double algbw = 0, busbw = 0;  // GB/s
  std::size_t wire = 0;         // bytes each rank sends (mean over ranks)
  double base_us = 0;           // the engine collective at the same size, in the blocks beside the row
  double base_p50_us = NAN;     // and the median of its calls (JSON)
  std::string validation;       // "Pass", "Fail", "3.1e-03", or "" without -c
  double max_rel_err = NAN;     // lossy paths with -c
  std::string codec = "none";   // the --codec entry
  std::string algorithm;        // the algorithm that ran ("MPI_Allreduce", "sra", ...)
  double paired_vs_base = NAN;  // median over rounds of the row's baseline blocks / the row (JSON)
  double encode_us = NAN, transfer_us = NAN, decode_us = NAN;  // plans: last call's split
  double predicted_us = NAN;    // "auto" plans: the cost model's prediction (JSON)
  // "auto" plans (PlanStats): why `algorithm` ran last, the switches since creation, both
  // candidates' predicted (trial) and measured (agreed, recent runs) times (JSON; the table
  // shows the algorithm and the switches after the codec).
  std::string decision;
  int switches = 0;
  double predicted_dense_us = NAN, predicted_compressed_us = NAN;
  double measured_dense_us = NAN, measured_compressed_us = NAN;
  // Plans: PlanStats' transport and executor, and the bytes that crossed PCIe per call (JSON).
  std::string transport, executor;
  double pcie_bytes = NAN;
  // Per-call spread (timing.hpp: spread), nccl-tests' names in the JSON.
  double p50_us = NAN, p95_us = NAN, p99_us = NAN, stdev_us = NAN, cv_pct = NAN;
  void set_spread(const Spread& s) {
    p50_us = s.p50_us;
    p95_us = s.p95_us;
    p99_us = s.p99_us;
    stdev_us = s.stdev_us;
    cv_pct = s.cv_pct;
  }
};

class Report {
 public:
  Report(const Args& args, Header header, int rank);
  ~Report();
  Report(const Report&) = delete;
  Report& operator=(const Report&) = delete;
  void begin();            // header and column titles
  void row(const Row& r);  // prints at once, so rows appear as they finish
  void end();              // footer: average bus bandwidth (per codec in a comparison)

 private:
  Args args_;
  Header header_;
  int rank_;
  std::FILE* json_ = nullptr;
  std::vector<std::string> order_;
  std::map<std::string, std::vector<double>> busbw_;
};

}  // namespace gwbench
