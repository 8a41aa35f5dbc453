#include "collectives/state_file.hpp"

#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>

#include <zlib.h>

#include "collectives/registry.hpp"  // collective_name

namespace gradwire::coll {
namespace {

constexpr char kMagic[8] = {'G', 'W', 'P', 'S', 'T', 'A', 'T', 'E'};
constexpr std::uint32_t kVersion = 1;

std::uint32_t crc_of(const char* bytes, std::size_t n) {
  return static_cast<std::uint32_t>(
      crc32_z(crc32_z(0, nullptr, 0), reinterpret_cast<const Bytef*>(bytes), n));
}

struct Writer {
  std::vector<char>& b;
  template <class T>
  void put(T v) {
    const std::size_t at = b.size();
    b.resize(at + sizeof v);
    std::memcpy(b.data() + at, &v, sizeof v);
  }
  void put_bytes(const void* p, std::size_t n) {
    const std::size_t at = b.size();
    b.resize(at + n);
    if (n > 0) std::memcpy(b.data() + at, p, n);
  }
  void put_floats(const std::vector<float>& v) {
    put<std::uint64_t>(v.size());
    put_bytes(v.data(), v.size() * sizeof(float));
  }
  void put_string(const std::string& s) {
    put<std::uint32_t>(static_cast<std::uint32_t>(s.size()));
    put_bytes(s.data(), s.size());
  }
};

// Reads within [at, end); every read checks the bounds (ok turns false, nothing past end).
struct Reader {
  const char* p;
  std::size_t at, end;
  bool ok = true;
  template <class T>
  T get() {
    T v{};
    if (!ok || end - at < sizeof v) {
      ok = false;
      return v;
    }
    std::memcpy(&v, p + at, sizeof v);
    at += sizeof v;
    return v;
  }
  bool get_bytes(void* out, std::size_t n) {
    if (!ok || end - at < n) return ok = false;
    if (n > 0) std::memcpy(out, p + at, n);
    at += n;
    return true;
  }
  // A count of n items of `size` bytes each that fits in what is left.
  bool fits(std::uint64_t n, std::size_t size) {
    if (!ok || n > (end - at) / size) ok = false;
    return ok;
  }
  std::vector<float> get_floats() {
    const auto n = get<std::uint64_t>();
    std::vector<float> v;
    if (!fits(n, sizeof(float))) return v;
    v.resize(n);
    get_bytes(v.data(), n * sizeof(float));
    return v;
  }
  std::string get_string() {
    const auto n = get<std::uint32_t>();
    if (!fits(n, 1)) return {};
    std::string s(n, '\0');
    get_bytes(s.data(), n);
    return s;
  }
};

// A value a float cannot hold is as corrupt as a NaN (as in the residual file).
std::string check_finite(const std::vector<float>& v, const char* what) {
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (!std::isfinite(v[i]) || std::fabs(v[i]) > 3.0e38f)
      return std::string("holds a non-finite value (") + std::to_string(v[i]) + ") in its " +
             what + " at element " + std::to_string(i);
  }
  return "";
}

std::uint64_t fnv1a(std::uint64_t h, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) h = (h ^ ((v >> (8 * i)) & 0xff)) * 0x100000001b3ull;
  return h;
}

}  // namespace

std::vector<char> encode_rank_state(const RankState& s) {
  std::vector<char> b;
  Writer w{b};
  w.put<std::uint32_t>(static_cast<std::uint32_t>(s.slots.size()));
  for (const RankState::Slot& sl : s.slots) {
    w.put<std::uint64_t>(sl.offset);
    w.put_floats(sl.data);
  }
  w.put_floats(s.velocity);
  return b;
}

std::string decode_rank_state(const std::vector<char>& bytes, std::size_t elements, RankState& s) {
  Reader r{bytes.data(), 0, bytes.size()};
  const auto n = r.get<std::uint32_t>();
  s.slots.clear();
  for (std::uint32_t i = 0; i < n && r.ok; ++i) {
    RankState::Slot sl;
    sl.offset = r.get<std::uint64_t>();
    sl.data = r.get_floats();
    if (r.ok && (sl.offset > elements || sl.data.size() > elements - sl.offset))
      return "a residual slot [" + std::to_string(sl.offset) + ", +" +
             std::to_string(sl.data.size()) + ") outside the plan's " + std::to_string(elements) +
             " elements";
    if (std::string e = check_finite(sl.data, "residual"); !e.empty()) return e;
    s.slots.push_back(std::move(sl));
  }
  s.velocity = r.get_floats();
  if (!r.ok) return "a truncated rank state";
  if (r.at != r.end) return "trailing bytes in a rank state";
  if (!s.velocity.empty() && s.velocity.size() != elements)
    return "a velocity of " + std::to_string(s.velocity.size()) + " elements; the plan has " +
           std::to_string(elements);
  return check_finite(s.velocity, "velocity");
}

std::uint64_t layout_hash(const RankState& s) {
  std::uint64_t h = fnv1a(0xcbf29ce484222325ull, s.slots.size());
  for (const RankState::Slot& sl : s.slots) h = fnv1a(fnv1a(h, sl.offset), sl.data.size());
  return fnv1a(h, s.velocity.size());
}

bool write_state_file(const std::string& path, const StateFile& f) {
  std::vector<char> b;
  Writer w{b};
  w.put_bytes(kMagic, 8);
  w.put<std::uint32_t>(kVersion);
  w.put<std::uint32_t>(static_cast<std::uint32_t>(f.collective));
  w.put<std::uint64_t>(f.elements);
  w.put<std::uint64_t>(f.step);
  w.put<std::uint32_t>(static_cast<std::uint32_t>(f.ranks.size()));
  w.put<std::uint32_t>(static_cast<std::uint32_t>(f.fields.size()));
  for (const auto& [name, value] : f.fields) {
    w.put_string(name);
    w.put_string(value);
  }
  w.put_floats(f.warm_start);
  for (const std::vector<char>& r : f.ranks) {
    w.put<std::uint64_t>(r.size());
    w.put_bytes(r.data(), r.size());
  }
  w.put<std::uint32_t>(crc_of(b.data(), b.size()));
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(b.data(), static_cast<std::streamsize>(b.size()));
  return out.good();
}

std::string read_state_file(const std::string& path, const StateFile& want, StateFile& out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return "cannot open '" + path + "'";
  const std::vector<char> b((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const std::string file = "'" + path + "' ";
  if (b.size() < 12 || std::memcmp(b.data(), kMagic, 8) != 0)
    return file + "is not a gradwire plan-state file";
  std::uint32_t version = 0;
  std::memcpy(&version, b.data() + 8, 4);
  if (version != kVersion)
    return file + "is a version " + std::to_string(version) +
           " plan-state file; this gradwire reads version " + std::to_string(kVersion);
  if (b.size() < 16) return file + "is truncated";
  std::uint32_t crc = 0;
  std::memcpy(&crc, b.data() + b.size() - 4, 4);
  if (crc != crc_of(b.data(), b.size() - 4))
    return file + "fails its CRC-32 checksum (corrupted, truncated or with trailing bytes)";
  Reader r{b.data(), 12, b.size() - 4};
  const auto coll = r.get<std::uint32_t>();
  out.elements = r.get<std::uint64_t>();
  out.step = r.get<std::uint64_t>();
  const auto ranks = r.get<std::uint32_t>();
  const auto nfields = r.get<std::uint32_t>();
  const auto last = static_cast<std::uint32_t>(PlanCollective::ReduceScatter);
  if (!r.ok) return file + "is truncated";
  if (coll > last || coll != static_cast<std::uint32_t>(want.collective) ||
      out.elements != want.elements) {
    return file + "holds " + std::to_string(out.elements) + " elements of a " +
           (coll > last ? "?" : collective_name(static_cast<PlanCollective>(coll))) +
           " plan; this plan has " + std::to_string(want.elements) + " of an " +
           collective_name(want.collective) + " plan";
  }
  out.collective = want.collective;
  out.fields.clear();
  for (std::uint32_t i = 0; i < nfields && r.ok; ++i) {
    std::string name = r.get_string();
    std::string value = r.get_string();
    out.fields.emplace_back(std::move(name), std::move(value));
  }
  out.warm_start = r.get_floats();
  out.ranks.assign(r.ok ? ranks : 0, {});
  for (std::uint32_t i = 0; i < ranks && r.ok; ++i) {
    const auto n = r.get<std::uint64_t>();
    if (!r.fits(n, 1)) break;
    out.ranks[i].resize(n);
    r.get_bytes(out.ranks[i].data(), n);
  }
  if (!r.ok) return file + "is truncated or malformed";
  if (r.at != r.end) return file + "has bytes after its last rank's state";
  // Every field that differs, with both values: what the user has to change.
  std::string differ;
  auto value_in = [](const StateFields& fs, const std::string& name) {
    for (const auto& [n, v] : fs)
      if (n == name) return v;
    return std::string("(none)");
  };
  for (const auto& [name, value] : want.fields) {
    const std::string saved = value_in(out.fields, name);
    if (saved != value)
      differ += (differ.empty() ? "" : ", ") + name + " " + saved + " there, " + value + " here";
  }
  for (const auto& [name, value] : out.fields) {
    if (value_in(want.fields, name) == "(none)")
      differ += (differ.empty() ? "" : ", ") + name + " " + value + " there, (none) here";
  }
  if (!differ.empty()) return file + "was saved by a plan of another configuration: " + differ;
  if (out.warm_start.size() != want.warm_start.size())
    return file + "holds a warm start (PowerSGD Q) of " + std::to_string(out.warm_start.size()) +
           " elements; this plan's has " + std::to_string(want.warm_start.size());
  if (std::string e = check_finite(out.warm_start, "warm start"); !e.empty()) return file + e;
  return "";
}

}  // namespace gradwire::coll
