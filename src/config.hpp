// Settings read from the environment, with errors that name the variable.
#pragma once

#include <string>

namespace gradwire::detail {

// The longest finite deadline accepted (11.6 days): longer ones are almost certainly a mistake
// for "no deadline", which is spelled inf or none. Keeps every deadline far from int64 ns
// overflow.
inline constexpr double kMaxTimeoutS = 1e6;

// Seconds from `name` (a positive decimal), or `fallback` when unset or empty.
double env_seconds(const char* name, double fallback);
// A non-negative integer from `name`, or `fallback` when unset or empty.
int env_int(const char* name, int fallback);
// The value of `name`, or "" when unset.
std::string env_string(const char* name);

// A deadline setting: a decimal in (0, kMaxTimeoutS], or inf/none/infinity (any case) for no
// deadline, returned as +infinity. Anything else (0, negative, nan, 1e10, trailing text)
// throws Error(InvalidArgument) naming `name` and the accepted range.
double parse_timeout(const char* name, const std::string& value);
// parse_timeout of the variable `name`, or `fallback` when unset or empty.
double env_timeout(const char* name, double fallback);
// Checks a timeout given in Options (same range; +infinity means none).
void check_timeout_option(const char* field, double seconds);

// GRADWIRE_CHECK: 0 (default) or 1.
bool env_check();

// The GRADWIRE_* variables set in the environment that gradwire does not know, comma-separated.
std::string unknown_gradwire_env();
// Warns once per process, on stderr, about GRADWIRE_* variables gradwire does not know (a typo
// such as GRADWIRE_TIMEOUTT would otherwise be silently ignored), naming the known ones.
void warn_unknown_env_once();

}  // namespace gradwire::detail
