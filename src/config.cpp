#include "config.hpp"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "gradwire/error.hpp"

extern char** environ;

namespace gradwire::detail {

std::string env_string(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

double env_seconds(const char* name, double fallback) {
  const std::string v = env_string(name);
  if (v.empty()) return fallback;
  char* end = nullptr;
  errno = 0;
  const double s = std::strtod(v.c_str(), &end);
  if (errno != 0 || end == v.c_str() || *end != '\0' || !std::isfinite(s) || s <= 0) {
    throw Error(ErrorCode::InvalidArgument, std::string("gradwire: ") + name + "='" + v +
                                                "' is not a positive number of seconds");
  }
  return s;
}

int env_int(const char* name, int fallback) {
  const std::string v = env_string(name);
  if (v.empty()) return fallback;
  char* end = nullptr;
  errno = 0;
  const long n = std::strtol(v.c_str(), &end, 10);
  if (errno != 0 || end == v.c_str() || *end != '\0' || n < 0 || n > 1'000'000'000) {
    throw Error(ErrorCode::InvalidArgument,
                std::string("gradwire: ") + name + "='" + v + "' is not a non-negative integer");
  }
  return static_cast<int>(n);
}

namespace {

std::string lower(std::string s) {
  for (char& ch : s) ch = static_cast<char>(ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch);
  return s;
}

[[noreturn]] void bad_timeout(const char* name, const std::string& value) {
  char max[32];
  std::snprintf(max, sizeof max, "%g", kMaxTimeoutS);
  throw Error(ErrorCode::InvalidArgument,
              std::string("gradwire: ") + name + "='" + value +
                  "' is not a timeout: give seconds in (0, " + max +
                  "], or inf (also none) for no deadline");
}

}  // namespace

double parse_timeout(const char* name, const std::string& value) {
  const std::string v = lower(value);
  if (v == "inf" || v == "none" || v == "infinity") return HUGE_VAL;
  char* end = nullptr;
  errno = 0;
  const double s = std::strtod(value.c_str(), &end);
  if (errno != 0 || end == value.c_str() || *end != '\0' || !(s > 0) || s > kMaxTimeoutS)
    bad_timeout(name, value);
  return s;
}

double env_timeout(const char* name, double fallback) {
  const std::string v = env_string(name);
  return v.empty() ? fallback : parse_timeout(name, v);
}

void check_timeout_option(const char* field, double s) {
  if (std::isinf(s) && s > 0) return;
  if (!(s > 0) || s > kMaxTimeoutS) bad_timeout(field, std::to_string(s));
}

bool env_check() {
  const std::string v = env_string("GRADWIRE_CHECK");
  if (v.empty() || v == "0") return false;
  if (v == "1") return true;
  throw Error(ErrorCode::InvalidArgument,
              "gradwire: GRADWIRE_CHECK='" + v + "' is not one of: 0, 1");
}

namespace {

// Read by the library at run time, and by the project's own scripts (not warned about).
constexpr const char* kKnown[] = {"GRADWIRE_TIMEOUT",    "GRADWIRE_INIT_TIMEOUT",
                                  "GRADWIRE_ON_TIMEOUT", "GRADWIRE_NODE_SPLIT",
                                  "GRADWIRE_CODEC_ISA",  "GRADWIRE_CHECK",
                                  "GRADWIRE_ON_FAILURE", "GRADWIRE_JOIN", "GRADWIRE_COST_CACHE",
                                  "GRADWIRE_DEVICE_STAGING",
                                  "GRADWIRE_BALANCE_SHARDS", "GRADWIRE_SLOW_RANK",
                                  "GRADWIRE_OVERLAP",    "GRADWIRE_OVERLAP_CHUNK",
                                  "GRADWIRE_TIMELINE",   "GRADWIRE_TIMELINE_EVENTS"};
constexpr const char* kScripts[] = {"GRADWIRE_JOBS", "GRADWIRE_CHECK_NP", "GRADWIRE_OMPI5"};

}  // namespace

std::string unknown_gradwire_env() {
  std::string unknown;
  for (char** e = environ; e && *e; ++e) {
    if (std::strncmp(*e, "GRADWIRE_", 9) != 0) continue;
    const char* eq = std::strchr(*e, '=');
    const std::string name(*e, eq ? static_cast<std::size_t>(eq - *e) : std::strlen(*e));
    bool known = false;
    for (const char* k : kKnown) known = known || name == k;
    for (const char* k : kScripts) known = known || name == k;
    if (!known) unknown += (unknown.empty() ? "" : ", ") + name;
  }
  return unknown;
}

void warn_unknown_env_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    const std::string unknown = unknown_gradwire_env();
    if (unknown.empty()) return;
    std::string list;
    for (const char* k : kKnown) list += (list.empty() ? "" : ", ") + std::string(k);
    std::fprintf(stderr,
                 "gradwire: warning: unknown environment variable(s) %s ignored; gradwire reads "
                 "%s\n",
                 unknown.c_str(), list.c_str());
    std::fflush(stderr);
  });
}

}  // namespace gradwire::detail
