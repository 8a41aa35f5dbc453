// Runs f and records the gradwire::Error it threw, if any: for tests that must reach the
// same point on every rank whether or not a call failed.
#pragma once

#include <string>

#include <gradwire/error.hpp>

namespace gwtest {

struct Caught {
  bool thrown = false;
  gradwire::ErrorCode code = gradwire::ErrorCode::Internal;
  std::string message;
};

template <class F>
Caught catch_error(F&& f) {
  Caught c;
  try {
    f();
  } catch (const gradwire::Error& e) {
    c.thrown = true;
    c.code = e.code();
    c.message = e.what();
  }
  return c;
}

}  // namespace gwtest
