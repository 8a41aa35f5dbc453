// The host codec executor: Codec's own calls and plain loops (the same bits as before the
// executor existed: the loops are those of the algorithms and of detail::divide_in_place).
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>

#include "codec/executor.hpp"

namespace gradwire::exec {
namespace {

class HostExecutor final : public Executor {
 public:
  bool on_device() const noexcept override { return false; }
  const char* name() const noexcept override { return "host"; }
  void* allocate(std::size_t bytes) override {
    void* p = std::calloc(bytes, 1);
    if (!p) throw std::bad_alloc();
    return p;
  }
  void release(void* p) noexcept override { std::free(p); }
  std::size_t encode(const Codec& c, const void* in, DType t, std::size_t n, std::uint64_t goff,
                     std::uint64_t seed, std::uint64_t step, std::byte* out, std::size_t cap,
                     float* residual) override {
    return c.encode(in, t, n, goff, seed, step, out, cap, residual);
  }
  void decode(const Codec& c, const std::byte* in, std::size_t bytes, void* out, DType t,
              std::size_t n) override {
    c.decode(in, bytes, out, t, n);
  }
  void decode_add(const Codec& c, const std::byte* in, std::size_t bytes, float* acc,
                  std::size_t n) override {
    c.decode_add(in, bytes, acc, n);
  }
  void add(float* acc, const float* x, std::size_t n) override {
    for (std::size_t i = 0; i < n; ++i) acc[i] += x[i];
  }
  void divide(float* x, std::size_t n, int p) override {
    if (p == 1) return;
    const float d = static_cast<float>(p);  // divided, not multiplied by a rounded 1/p
    for (std::size_t i = 0; i < n; ++i) x[i] = x[i] / d;
  }
  void copy(void* dst, const void* src, std::size_t bytes) override {
    if (bytes && dst != src) std::memmove(dst, src, bytes);
  }
  void zero(void* dst, std::size_t bytes) override {
    if (bytes) std::memset(dst, 0, bytes);
  }
  void zero_non_finite(float* x, std::size_t n) override {
    for (std::size_t i = 0; i < n; ++i)
      if (!std::isfinite(x[i])) x[i] = 0.0f;
  }
  void flag_non_finite(const float* x, const float* res, std::size_t n, std::uint64_t* flag,
                       std::uint64_t value) override {
    for (std::size_t i = 0; i < n; ++i) {
      if (!std::isfinite(res ? x[i] + res[i] : x[i])) {
        *flag = value;
        return;
      }
    }
  }
  void to_host(void* host, const void* src, std::size_t bytes) override { copy(host, src, bytes); }
  void from_host(void* dst, const void* host, std::size_t bytes) override { copy(dst, host, bytes); }
  void finish(double) override {}
};

}  // namespace

Executor& host_executor() {
  static HostExecutor x;
  return x;
}

}  // namespace gradwire::exec
