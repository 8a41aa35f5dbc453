// Hierarchical allreduce: dense reduce inside the node, the inner algorithm among node
// leaders, broadcast inside the node (with the leader's error status beside the data).
#include "collectives/algorithms.hpp"
#include "collectives/staged.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <string>
#include <vector>

#include "gradwire/error.hpp"

namespace gradwire::coll {
namespace {

class Hier final : public Algorithm {
 public:
  Hier(Transport& local, std::unique_ptr<Algorithm> inner, const AlgoParams& p, int global_size)
      : local_(local), inner_(std::move(inner)), p_(p), global_size_(global_size),
        done_(8) {
    leader_ = local.rank() == 0;
    if (leader_) node_sum_.resize(p.count);
    if (inner_) slots = inner_->slots;
  }
  void begin(const void* in, void* out, std::uint64_t step) override {
    out_ = static_cast<float*>(out);
    step_ = step;
    encode_s = decode_s = 0;
    stage_ = 0;
    if (p_.count == 0) {
      stage_ = 3;
      return;
    }
    status_.fill(std::byte{0});
    // Dense inside the node: the fast local links carry the full vector.
    local_.ireduce(in, leader_ ? node_sum_.data() : nullptr, p_.count, Elem::F32, 0);
  }
  bool progress() override {
    for (;;) {
      switch (stage_) {
        case 0:
          if (!drain()) return false;
          if (leader_) inner_->begin(node_sum_.data(), out_, step_);
          stage_ = 1;
          break;
        case 1:
          if (leader_) {
            try {
              if (!inner_->progress()) return false;
              encode_s = inner_->encode_s;
              decode_s = inner_->decode_s;
              if (p_.op == ReduceOp::Avg) scale(out_, p_.count, global_size_);
            } catch (const Error& e) {
              // The node's other ranks wait on the broadcast below: they learn the leader's
              // error from it, in the status posted beside the data, instead of timing out.
              set_status(e);
            }
          }
          local_.ibcast(status_.data(), status_.size(), 0);
          local_.ibcast(out_, p_.count * sizeof(float), 0);
          stage_ = 2;
          break;
        case 2:
          if (!drain()) return false;
          stage_ = 3;
          raise_status();
          break;
        default: return true;
      }
    }
  }

 private:
  bool drain() {
    for (;;) {
      const int n = local_.test_some(done_.data());
      if (n == 0) return false;
      if (n < 0) {
        local_.reset();
        return true;
      }
    }
  }
  // status_: the leader's error code (4 bytes, 0: none) and text, the same on every rank of
  // the node after the broadcast.
  void set_status(const Error& e) {
    std::string text = std::string(e.what()) +
                       " (hier: ranks named are among node leaders; the value may come from "
                       "any rank of that node)";
    text.resize(std::min(text.size(), status_.size() - 5));
    const auto code = static_cast<std::int32_t>(e.code());
    std::memcpy(status_.data(), &code, 4);
    std::memcpy(status_.data() + 4, text.data(), text.size());
  }
  void raise_status() const {
    std::int32_t code = 0;
    std::memcpy(&code, status_.data(), 4);
    if (code == 0) return;
    throw Error(static_cast<ErrorCode>(code), reinterpret_cast<const char*>(status_.data() + 4));
  }
  Transport& local_;
  std::unique_ptr<Algorithm> inner_;
  AlgoParams p_;
  int global_size_;
  std::array<std::byte, 512> status_{};
  bool leader_ = false;
  std::vector<float> node_sum_;
  std::vector<int> done_;
  float* out_ = nullptr;
  std::uint64_t step_ = 0;
  int stage_ = 3;
};

}  // namespace

std::unique_ptr<Algorithm> make_hier(Transport& local, std::unique_ptr<Algorithm> inner,
                                     const AlgoParams& p, int global_size) {
  return std::make_unique<Hier>(local, std::move(inner), p, global_size);
}


}  // namespace gradwire::coll
