#include "collectives/slowdown.hpp"

#include <mpi.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

#include "gradwire/error.hpp"

namespace gradwire::coll {
namespace {

// The factor for this process from GRADWIRE_SLOW_RANK ("<rank>:<factor>"); -1 when malformed.
double parse() {
  const char* v = std::getenv("GRADWIRE_SLOW_RANK");
  if (!v || !*v) return 1;
  char* end = nullptr;
  const long rank = std::strtol(v, &end, 10);
  if (end == v || *end != ':' || rank < 0) return -1;
  const char* f = end + 1;
  const double factor = std::strtod(f, &end);
  if (end == f || *end != '\0' || !(factor >= 1) || factor > 1000) return -1;
  int init = 0, me = 0;
  MPI_Initialized(&init);
  if (init) MPI_Comm_rank(MPI_COMM_WORLD, &me);
  return me == rank ? factor : 1;
}

// Set by codec_slowdown() at each plan creation, so a process can change it between plans.
std::atomic<double> g_factor{1.0};

}  // namespace

double codec_slowdown() {
  const double f = parse();
  g_factor.store(f < 0 ? 1.0 : f, std::memory_order_relaxed);
  if (f < 0) {
    throw Error(ErrorCode::InvalidArgument,
                std::string("gradwire: GRADWIRE_SLOW_RANK='") + std::getenv("GRADWIRE_SLOW_RANK") +
                    "' is not <rank>:<factor> with factor in [1, 1000]");
  }
  return f;
}

void slow_down(double elapsed_s) noexcept {
  const double f = g_factor.load(std::memory_order_relaxed);
  if (f > 1 && elapsed_s > 0)
    std::this_thread::sleep_for(std::chrono::duration<double>((f - 1) * elapsed_s));
}

}  // namespace gradwire::coll
