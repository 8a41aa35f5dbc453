// A host executor that behaves like a device one (exec::Executor::on_device() is true): the
// algorithms then take their device paths (fixed-size messages, the agreed non-finite flag,
// no run-error records in messages), and failures are recorded and thrown by finish() the way
// the CUDA executor's are, later calls skipping their work meanwhile. So the device paths'
// logic is tested on machines without a GPU; the kernels themselves are tested on a GPU
// (tests/gpu, scripts/gpu_check.sh).
#pragma once

#include <cmath>
#include <cstring>
#include <optional>

#include "codec/executor.hpp"
#include "gradwire/error.hpp"

namespace gwloop {

class EmulatedDevice final : public gradwire::exec::Executor {
 public:
  // Encodes asked of this executor (an algorithm that encodes with the host codec directly,
  // as a host pipeline does, would bypass it: on a real device, on device pointers).
  std::size_t encodes = 0;
  bool on_device() const noexcept override { return true; }
  const char* name() const noexcept override { return "emulated-device"; }
  void* allocate(std::size_t bytes) override { return host().allocate(bytes); }
  void release(void* p) noexcept override { host().release(p); }
  std::size_t encode(const gradwire::Codec& c, const void* in, gradwire::DType t, std::size_t n,
                     std::uint64_t goff, std::uint64_t seed, std::uint64_t step, std::byte* out,
                     std::size_t cap, float* residual) override {
    const std::size_t dense = c.spec().sparse() ? 0 : c.max_encoded_bytes(n);
    ++encodes;
    if (failed_) return dense;
    try {
      host().encode(c, in, t, n, goff, seed, step, out, cap, residual);
    } catch (const gradwire::Error& e) {
      failed_ = e;
    }
    return dense;
  }
  void decode(const gradwire::Codec& c, const std::byte* in, std::size_t bytes, void* out,
              gradwire::DType t, std::size_t n) override {
    if (failed_) return;
    try {
      host().decode(c, in, bytes, out, t, n);
    } catch (const gradwire::Error& e) {
      failed_ = e;
    }
  }
  void decode_add(const gradwire::Codec& c, const std::byte* in, std::size_t bytes, float* acc,
                  std::size_t n) override {
    if (failed_) return;
    try {
      host().decode_add(c, in, bytes, acc, n);
    } catch (const gradwire::Error& e) {
      failed_ = e;
    }
  }
  void add(float* acc, const float* x, std::size_t n) override { host().add(acc, x, n); }
  void divide(float* x, std::size_t n, int p) override { host().divide(x, n, p); }
  void copy(void* dst, const void* src, std::size_t bytes) override { host().copy(dst, src, bytes); }
  void zero(void* dst, std::size_t bytes) override { host().zero(dst, bytes); }
  void zero_non_finite(float* x, std::size_t n) override { host().zero_non_finite(x, n); }
  void flag_non_finite(const float* x, const float* res, std::size_t n, std::uint64_t* flag,
                       std::uint64_t value) override {
    host().flag_non_finite(x, res, n, flag, value);
  }
  void to_host(void* h, const void* src, std::size_t bytes) override { host().copy(h, src, bytes); }
  void from_host(void* dst, const void* h, std::size_t bytes) override { host().copy(dst, h, bytes); }
  void finish(double) override {
    if (!failed_) return;
    const gradwire::Error e = *failed_;
    failed_.reset();
    throw e;
  }

 private:
  static gradwire::exec::Executor& host() { return gradwire::exec::host_executor(); }
  std::optional<gradwire::Error> failed_;
};

}  // namespace gwloop
