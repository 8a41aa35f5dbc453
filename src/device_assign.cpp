#include "device_assign.hpp"

#include <map>

namespace gradwire::detail {

std::string shared_device_error(const std::vector<std::string>& device_ids,
                                const std::vector<int>& ranks, const std::string& host) {
  std::map<std::string, int> first;
  for (std::size_t i = 0; i < device_ids.size() && i < ranks.size(); ++i) {
    const auto [it, fresh] = first.emplace(device_ids[i], ranks[i]);
    if (!fresh) {
      return "ranks " + std::to_string(it->second) + " and " + std::to_string(ranks[i]) +
             " on host " + host + " both use GPU " + device_ids[i] +
             " (one rank per GPU: launch no more ranks per node than GPUs, or pass "
             "Options::device)";
    }
  }
  return "";
}

}  // namespace gradwire::detail
