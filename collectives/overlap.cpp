#include "collectives/overlap.hpp"

#include <cstdlib>
#include <string>

#include "gradwire/error.hpp"

namespace gradwire::coll {

std::size_t overlap_chunk(const Transport& t, const AlgoParams& p) {
  if (t.stream() != nullptr || p.x->on_device()) return 0;
  if (p.overlap_chunk) return p.overlap_chunk;
  if (const char* c = std::getenv("GRADWIRE_OVERLAP_CHUNK")) {
    char* end = nullptr;
    const unsigned long long v = std::strtoull(c, &end, 10);
    if (!*c || *end || v == 0) {
      throw Error(ErrorCode::InvalidArgument, "gradwire: GRADWIRE_OVERLAP_CHUNK='" + std::string(c) +
                                                  "' is not a positive element count");
    }
    return static_cast<std::size_t>(v);
  }
  const char* on = std::getenv("GRADWIRE_OVERLAP");
  if (!on) return 0;
  const std::string v = on;
  if (v == "0") return 0;
  if (v == "1") return kOverlapChunk;
  throw Error(ErrorCode::InvalidArgument, "gradwire: GRADWIRE_OVERLAP='" + v + "' is not one of: 0, 1");
}

}  // namespace gradwire::coll
