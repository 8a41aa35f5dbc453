// The table every osu-style benchmark prints: OSU's columns first (so OSU parsers read it),
// then nccl-tests' bandwidths, the bytes on the wire, and the plain engine's latency beside
// gradwire's.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "args.hpp"

namespace gwbench {

struct Header {
  std::string benchmark;   // "gw_allreduce"
  std::string backend;     // "mpi"
  std::string memory;      // "host"
  std::string codec;       // "none"
  std::string baseline;    // "MPI_Allreduce"
  int ranks = 1, nodes = 1;
  double rendezvous_s = 0;
};

struct Row {
  std::size_t bytes = 0;     // logical, uncompressed size
  double avg_us = 0, min_us = 0, max_us = 0;
  int iterations = 0;
  double algbw = 0, busbw = 0;  // GB/s
  std::size_t wire = 0;         // bytes each rank sends
  double base_us = 0;           // the engine collective at the same size, same run
  std::string validation;       // "Pass", "Fail", or "" without -c
};

class Report {
 public:
  Report(const Args& args, Header header, int rank);
  ~Report();
  void begin();            // header and column titles
  void row(const Row& r);  // prints at once, so rows appear as they finish
  void end();              // footer: average bus bandwidth

 private:
  Args args_;
  Header header_;
  int rank_;
  std::FILE* json_ = nullptr;
  std::vector<double> busbw_;
};

}  // namespace gwbench
