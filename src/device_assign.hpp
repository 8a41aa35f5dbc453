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

}  // namespace gradwire::detail
