// Which GPU a rank uses, and the check that no two ranks of a node share one.
#pragma once

#include <string>
#include <vector>

namespace gradwire::detail {

// `device_ids[i]` identifies the GPU chosen by the node's i-th rank, whose global rank is
// `ranks[i]`. Returns "" when all differ, else a message naming both ranks, the host and the
// GPU.
std::string shared_device_error(const std::vector<std::string>& device_ids,
                                const std::vector<int>& ranks, const std::string& host);

// The GPU a rank uses: `requested` (Options::device) when set (>= 0), else its local rank
// modulo the node's `count` GPUs. The NCCL setup and device plans both pick by it, so a plan
// runs on the GPU the communicator's NCCL communicator uses (or would use).
inline int chosen_device(int requested, int local_rank, int count) noexcept {
  return requested >= 0 ? requested : count > 0 ? local_rank % count : 0;
}

}  // namespace gradwire::detail
