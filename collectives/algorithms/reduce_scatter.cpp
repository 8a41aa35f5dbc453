// Direct reduce-scatter: every rank encodes each peer's block of x (+ residual) once and sends
// it to that peer; the owner adds its own block exactly and then the decoded blocks, in a fixed
// order (me+1, me+2, ... mod P) as soon as each one's predecessors have arrived, into a float32
// accumulator: decoding overlaps the transfer, and a run's bits do not depend on timing. One quantization per contribution (ZeRO++'s qgZ keeps one
// per hop; here there is one hop), float32 accumulation, no re-encode: only the owner needs
// the result, so there is no allgather half and no second rounding as in SRA.
#include "collectives/algorithms/reduce_scatter.hpp"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "collectives/staged.hpp"
#include "gradwire/error.hpp"

namespace gradwire::coll {
namespace {

class ReduceScatter final : public Staged {
 public:
  ReduceScatter(Transport& t, const AlgoParams& p) : Staged(t), p_(p), codec_(p.codec) {
    if (codec_.sparse()) {
      throw Error(ErrorCode::InvalidArgument,
                  "gradwire: reduce-scatter plans need a dense codec (none, fp16, bf16, q1-q8, "
                  "sign), not '" + p.codec.to_string() + "'");
    }
    if (p.dtype != DType::Float32)
      throw Error(ErrorCode::Unsupported, "gradwire: reduce-scatter plans take float32");
    const int P = t.size();
    me_ = t.rank();
    raw_ = p.codec.kind == CodecKind::None;
    cap_ = p.count == 0 ? 0 : raw_ ? p.count * sizeof(float) : codec_.max_encoded_bytes(p.count);
    if (cap_ > 0x7fffffffu)
      throw Error(ErrorCode::Unsupported,
                  "gradwire: reduce-scatter: a block's message exceeds MPI's int count");
    if (!raw_) send_.resize(cap_ * static_cast<std::size_t>(P));
    recv_.resize(cap_ * static_cast<std::size_t>(P));
    acc_.resize(p.count);
    peer_.resize(done_.size());
    ready_.resize(static_cast<std::size_t>(P));
    if (p.error_feedback && !raw_) {
      // Over the whole input: the output depends on residuals only through their sum over
      // ranks, which is what the residual file keeps (docs/compressed-collectives.md).
      res_.assign(p.count * static_cast<std::size_t>(P), 0.0f);
      slots.push_back({res_.data(), 0, res_.size(), true});
    }
  }

 protected:
  bool advance() override {
    const int P = t_.size();
    const std::size_t n = p_.count;
    if (stage_ == 0) {
      if (n == 0) return false;
      const float* x = static_cast<const float*>(in_);
      if (!raw_) {
        Timed tm(encode_s);
        for (int j = 0; j < P; ++j) {
          if (j == me_) continue;
          const std::size_t at = static_cast<std::size_t>(j) * n;
          codec_.encode(x + at, DType::Float32, n, at, p_.seed, step_,
                        send_.data() + cap_ * static_cast<std::size_t>(j), cap_,
                        res_.empty() ? nullptr : res_.data() + at);
        }
      }
      // The own block needs no rounding: added exactly (with any residual a load gave it).
      const float* own = x + static_cast<std::size_t>(me_) * n;
      if (res_.empty()) {
        std::copy_n(own, n, acc_.data());
      } else {
        float* r = res_.data() + static_cast<std::size_t>(me_) * n;
        for (std::size_t i = 0; i < n; ++i) acc_[i] = own[i] + r[i];
        std::fill(r, r + n, 0.0f);
      }
      std::fill(ready_.begin(), ready_.end(), 0);
      next_ = 1;
      for (int j = 0; j < P; ++j)
        if (j != me_) peer_[t_.irecv(recv_.data() + cap_ * j, cap_, j, kTagScatter)] = j;
      t_.group_start();
      for (int j = 0; j < P; ++j) {
        if (j == me_) continue;
        const void* msg = raw_ ? static_cast<const void*>(x + static_cast<std::size_t>(j) * n)
                               : send_.data() + cap_ * static_cast<std::size_t>(j);
        peer_[t_.isend(msg, cap_, j, kTagScatter)] = -1;
      }
      t_.group_end();
      return true;
    }
    // Every send has completed, so writing out_ cannot disturb one reading the input.
    if (p_.op == ReduceOp::Avg) scale(acc_.data(), n, P);
    std::copy_n(acc_.data(), n, static_cast<float*>(out_));
    return false;
  }

  void arrived(int op) override {
    const int j = peer_[static_cast<std::size_t>(op)];
    if (j < 0) return;  // a send
    ready_[static_cast<std::size_t>(j)] = 1;
    const int P = t_.size();
    while (next_ < P && ready_[static_cast<std::size_t>((me_ + next_) % P)]) add((me_ + next_++) % P);
  }

  void add(int j) {
    Timed tm(decode_s);
    const std::byte* m = recv_.data() + cap_ * static_cast<std::size_t>(j);
    if (raw_) {
      const float* v = reinterpret_cast<const float*>(m);
      for (std::size_t i = 0; i < p_.count; ++i) acc_[i] += v[i];
    } else {
      codec_.decode_add(m, cap_, acc_.data(), p_.count);
    }
  }

 private:
  AlgoParams p_;
  Codec codec_;
  int me_ = 0, next_ = 1;  // next_: offset from me_ of the next block to add
  bool raw_ = false;
  std::size_t cap_ = 0;
  std::vector<std::byte> send_, recv_;
  std::vector<float> acc_, res_;
  std::vector<int> peer_;
  std::vector<char> ready_;
};

}  // namespace

std::unique_ptr<Algorithm> make_reduce_scatter(Transport& t, const AlgoParams& p) {
  return std::make_unique<ReduceScatter>(t, p);
}

}  // namespace gradwire::coll
