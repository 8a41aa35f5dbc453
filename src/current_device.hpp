// Makes a GPU current on the calling thread for a scope, and the previous one current again
// after it. Every device entry point takes one (the communicator's device collectives, its
// split, a device plan's construction, run and start), so a thread whose current device
// differs still makes its objects and launches its work on the communicator's GPU. A no-op
// for device -1 and in builds without CUDA.
#pragma once

#include <string>

namespace gradwire::detail {

class CurrentDevice {
 public:
  explicit CurrentDevice(int device) noexcept;
  ~CurrentDevice();
  CurrentDevice(const CurrentDevice&) = delete;
  CurrentDevice& operator=(const CurrentDevice&) = delete;
  bool ok() const noexcept { return error_.empty(); }
  // Why the device could not be made current ("" when it was).
  const std::string& error() const noexcept { return error_; }

 private:
  int previous_ = -1;
  std::string error_;
};

}  // namespace gradwire::detail
