#include "config.hpp"

#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "gradwire/error.hpp"

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

}  // namespace gradwire::detail
