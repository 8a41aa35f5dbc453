#include "collectives/overlap.hpp"

#include <algorithm>
#include <cstdlib>
#include <string>

#include "gradwire/error.hpp"

namespace gradwire::coll {
namespace {

constexpr std::uint64_t kInvalid = ~std::uint64_t{0};

// The environment's chunk: 0 off, kInvalid for a value that is not one.
std::uint64_t env_chunk(std::string* bad) noexcept {
  if (const char* c = std::getenv("GRADWIRE_OVERLAP_CHUNK")) {
    char* end = nullptr;
    const unsigned long long v = std::strtoull(c, &end, 10);
    if (!*c || *end || v == 0 || v == kInvalid) {
      if (bad) *bad = "GRADWIRE_OVERLAP_CHUNK='" + std::string(c) + "' is not a positive element count";
      return kInvalid;
    }
    return v;
  }
  const char* on = std::getenv("GRADWIRE_OVERLAP");
  if (!on || std::string(on) == "0") return 0;
  if (std::string(on) == "1") return kOverlapChunk;
  if (bad) *bad = "GRADWIRE_OVERLAP='" + std::string(on) + "' is not one of: 0, 1";
  return kInvalid;
}

}  // namespace

std::uint64_t overlap_setting() noexcept { return env_chunk(nullptr); }

std::size_t pipeline_chunk(std::size_t count, std::size_t chunk) {
  return std::max(chunk, (count + kMaxOverlapChunks - 1) / kMaxOverlapChunks);
}

int overlap_ops(int P, std::size_t count) {
  const std::uint64_t c = env_chunk(nullptr);
  if (c == 0 || c == kInvalid || P < 2 || count == 0) return 0;
  const std::size_t chunk = pipeline_chunk(count, static_cast<std::size_t>(c));
  return 2 * (P - 1) * static_cast<int>((count + chunk - 1) / chunk);
}

std::size_t overlap_chunk(const Transport& t, const AlgoParams& p) {
  if (t.stream() != nullptr || p.x->on_device()) return 0;
  if (p.overlap_chunk) return p.overlap_chunk;
  std::string bad;
  const std::uint64_t c = env_chunk(&bad);
  if (c == kInvalid) throw Error(ErrorCode::InvalidArgument, "gradwire: " + bad);
  return static_cast<std::size_t>(c);
}

}  // namespace gradwire::coll
