// Settings read from the environment, with errors that name the variable.
#pragma once

#include <string>

namespace gradwire::detail {

// Seconds from `name` (a positive decimal), or `fallback` when unset or empty.
double env_seconds(const char* name, double fallback);
// A non-negative integer from `name`, or `fallback` when unset or empty.
int env_int(const char* name, int fallback);
// The value of `name`, or "" when unset.
std::string env_string(const char* name);

}  // namespace gradwire::detail
