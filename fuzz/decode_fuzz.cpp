// libFuzzer target: arbitrary bytes into one codec's decoder (GW_FUZZ_SPEC names the codec).
// Any outcome but a WireFormat error or a clean decode is a bug; ASan/UBSan catch the rest.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "codec/wire.hpp"
#include "gradwire/codec.hpp"
#include "gradwire/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const gradwire::Codec codec = gradwire::make_codec(GW_FUZZ_SPEC);
  const auto* in = reinterpret_cast<const std::byte*>(data);
  // Decode with the count the message claims when it is small, so the fuzzer can reach the
  // body checks; a large claim is tried against a small buffer (must be rejected).
  std::size_t count = 1000;
  if (size >= 16) {
    const std::uint64_t c = gradwire::wire::load_u64(in + 8);
    if (c <= (1u << 16)) count = static_cast<std::size_t>(c);
  }
  std::vector<float> out(count + 1);
  try {
    codec.decode(in, size, out.data(), gradwire::DType::Float32, count);
    codec.decode_add(in, size, out.data(), count);
  } catch (const gradwire::Error& e) {
    if (e.code() != gradwire::ErrorCode::WireFormat) std::abort();
  }
  return 0;
}
