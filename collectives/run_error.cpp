#include "collectives/run_error.hpp"

#include <cmath>
#include <string>

#include "codec/wire.hpp"

namespace gradwire::coll {
namespace {
// "GWER": distinct from a codec message's magic ("GWCK"), so a record is never decoded.
constexpr std::uint32_t kMagic = 0x52455747u;
}  // namespace

void RunError::raise() const {
  std::string text = "gradwire: rank " + std::to_string(origin);
  if (what == NonFinite) {
    text += " found a non-finite value (input + residual)";
    if (value > 0) text += " at global index " + std::to_string(value - 1);
    text += "; quantizing codecs need finite input (docs/codecs.md)";
  } else {
    text += " received a malformed message from rank " + std::to_string(value);
  }
  text += "; every rank of this call fails with this error";
  throw Error(what == NonFinite ? ErrorCode::InvalidArgument : ErrorCode::WireFormat, text);
}

void write_run_error(const RunError& e, std::byte* out) {
  wire::store_u32(out, kMagic);
  wire::store_u32(out + 4, static_cast<std::uint32_t>(e.origin));
  wire::store_u32(out + 8, static_cast<std::uint32_t>(e.what));
  wire::store_u32(out + 12, 0);
  wire::store_u64(out + 16, e.value);
}

bool read_run_error(const std::byte* in, std::size_t bytes, RunError* e) {
  if (bytes < kRunErrorBytes || wire::load_u32(in) != kMagic) return false;
  e->origin = static_cast<int>(wire::load_u32(in + 4));
  e->what = wire::load_u32(in + 8) == RunError::Malformed ? RunError::Malformed : RunError::NonFinite;
  e->value = wire::load_u64(in + 16);
  return true;
}

RunError non_finite_at(int rank, const float* x, const float* res, std::size_t n,
                       std::uint64_t goff) {
  RunError e;
  e.origin = rank;
  for (std::size_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i] + (res ? res[i] : 0.0f))) {
      e.value = goff + i + 1;
      break;
    }
  }
  return e;
}

}  // namespace gradwire::coll
