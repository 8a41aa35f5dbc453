// A rank slowed on purpose, for benchmarks of uneven ranks (bench/results/uneven-ranks.md):
// with GRADWIRE_SLOW_RANK=<rank>:<factor> the codec work of that rank of MPI_COMM_WORLD takes
// `factor` times as long (it sleeps the difference after each codec pass, leaving its core to
// others, as a slower core would). Unset: factor 1; the cost is one load per codec pass.
#pragma once

namespace gradwire::coll {

// Reads the variable (every plan creation calls it, so a process may change it between
// plans) and returns this process's factor (>= 1). A malformed value is InvalidArgument
// naming it (and counts as unset).
double codec_slowdown();
// After a codec pass that took `elapsed_s`: sleeps (factor - 1) * elapsed_s. Never throws
// (a malformed variable counts as unset here; plan creation reports it).
void slow_down(double elapsed_s) noexcept;

}  // namespace gradwire::coll
