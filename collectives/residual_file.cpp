#include "collectives/residual_file.hpp"

#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>

#include <zlib.h>

#include "collectives/registry.hpp"  // collective_name

namespace gradwire::coll {
namespace {

constexpr char kMagic[8] = {'G', 'W', 'R', 'E', 'S', 'I', 'D', '1'};
constexpr std::uint32_t kFileVersion = 2;  // 2: CRC-32 trailer, finite values only

std::uint32_t crc_of(const char* bytes, std::size_t n) {
  return static_cast<std::uint32_t>(
      crc32_z(crc32_z(0, nullptr, 0), reinterpret_cast<const Bytef*>(bytes), n));
}

}  // namespace

bool write_residual_file(const std::string& path, PlanCollective c, const std::vector<double>& sum) {
  const std::size_t n = sum.size();
  std::vector<char> bytes(24 + n * 8);
  const std::uint32_t version = kFileVersion, coll = static_cast<std::uint32_t>(c);
  const std::uint64_t count = n;
  std::memcpy(bytes.data(), kMagic, 8);
  std::memcpy(bytes.data() + 8, &version, 4);
  std::memcpy(bytes.data() + 12, &coll, 4);
  std::memcpy(bytes.data() + 16, &count, 8);
  if (n > 0) std::memcpy(bytes.data() + 24, sum.data(), n * 8);
  const std::uint32_t crc = crc_of(bytes.data(), bytes.size());
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  f.write(reinterpret_cast<const char*>(&crc), 4);
  return f.good();
}

std::string read_residual_file(const std::string& path, PlanCollective want, std::size_t n,
                          std::vector<double>& sum) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return "cannot open '" + path + "'";
  std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  char magic[8] = {0};
  std::uint32_t version = 0, coll = 0;
  std::uint64_t count = 0;
  if (bytes.size() >= 24) {
    std::memcpy(magic, bytes.data(), 8);
    std::memcpy(&version, bytes.data() + 8, 4);
    std::memcpy(&coll, bytes.data() + 12, 4);
    std::memcpy(&count, bytes.data() + 16, 8);
  }
  if (bytes.size() < 24 || std::memcmp(magic, kMagic, 8) != 0)
    return "'" + path + "' is not a gradwire residual file";
  if (version != kFileVersion) {
    return "'" + path + "' is a version " + std::to_string(version) +
           " residual file; this gradwire reads version " + std::to_string(kFileVersion) +
           " (with a checksum): save it again";
  }
  const auto last = static_cast<std::uint32_t>(PlanCollective::ReduceScatter);
  if (coll > last || coll != static_cast<std::uint32_t>(want) || count != n) {
    return "'" + path + "' holds " + std::to_string(count) + " elements of a " +
           (coll > last ? "?" : collective_name(static_cast<PlanCollective>(coll))) +
           " plan; this plan has " + std::to_string(n) + " of an " + collective_name(want) +
           " plan";
  }
  const std::size_t want_bytes = 24 + n * 8 + 4;
  if (bytes.size() < want_bytes) return "'" + path + "' is truncated";
  if (bytes.size() > want_bytes) {
    return "'" + path + "' has " + std::to_string(bytes.size() - want_bytes) +
           " trailing byte(s) after the checksum";
  }
  std::uint32_t crc = 0;
  std::memcpy(&crc, bytes.data() + 24 + n * 8, 4);
  const std::uint32_t actual = crc_of(bytes.data(), 24 + n * 8);
  if (crc != actual) return "'" + path + "' fails its CRC-32 checksum (corrupted)";
  if (n > 0) std::memcpy(sum.data(), bytes.data() + 24, n * 8);
  for (std::size_t i = 0; i < n; ++i) {
    // A residual a float cannot hold is as corrupt as a NaN.
    if (!std::isfinite(sum[i]) || std::fabs(sum[i]) > 3.0e38) {
      return "'" + path + "' holds a non-finite or out-of-range value (" +
             std::to_string(sum[i]) + ") at element " + std::to_string(i);
    }
  }
  return "";
}

}  // namespace gradwire::coll
