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
  ReduceScatter(Transport& t, const AlgoParams& p) : Staged(t, *p.x), p_(p), codec_(p.codec) {
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
    if (!raw_) send_ = exec::Work<std::byte>(x_, cap_ * static_cast<std::size_t>(P));
    recv_ = exec::Work<std::byte>(x_, cap_ * static_cast<std::size_t>(P));
    acc_ = exec::Work<float>(x_, p.count);
    if (device_) flag_.init(x_);
    peer_.resize(done_.size());
    ready_.resize(static_cast<std::size_t>(P));
    if (p.error_feedback && !raw_) {
      // Over the whole input: the output depends on residuals only through their sum over
      // ranks, which is what the residual file keeps (docs/compressed-collectives.md).
      res_ = exec::Work<float>(x_, p.count * static_cast<std::size_t>(P));
      slots.push_back({res_.data(), 0, res_.size(), true, device_ ? &x_ : nullptr});
    }
  }

 protected:
  bool advance() override {
    const int P = t_.size();
    const std::size_t n = p_.count;
    if (stage_ == 0) {
      if (n == 0) return false;
      const float* x = static_cast<const float*>(in_);
      if (device_) flag_.check(x_, p_.codec, x, res_.empty() ? nullptr : res_.data(), n * static_cast<std::size_t>(P), P, me_);
      if (!raw_) {
        Timed tm(encode_s, "encode");
        for (int j = 0; j < P; ++j) {
          if (j == me_) continue;
          const std::size_t at = static_cast<std::size_t>(j) * n;
          x_.encode(codec_, x + at, DType::Float32, n, at, p_.seed, step_,
                    send_.data() + cap_ * static_cast<std::size_t>(j), cap_,
                    res_.empty() ? nullptr : res_.data() + at);
        }
      }
      // The own block needs no rounding: added exactly (with any residual a load gave it).
      const float* own = x + static_cast<std::size_t>(me_) * n;
      x_.copy(acc_.data(), own, n * sizeof(float));
      if (!res_.empty()) {
        float* r = res_.data() + static_cast<std::size_t>(me_) * n;
        x_.add(acc_.data(), r, n);  // own + r, one rounding: as before the executor
        x_.zero(r, n * sizeof(float));
      }
      std::fill(ready_.begin(), ready_.end(), 0);
      next_ = 1;
      Batch batch(t_);  // receives and sends together (NCCL: a lone receive waits forever)
      for (int j = 0; j < P; ++j)
        if (j != me_) peer_[t_.irecv(recv_.data() + cap_ * j, cap_, j, kTagScatter)] = j;
      for (int j = 0; j < P; ++j) {
        if (j == me_) continue;
        const void* msg = raw_ ? static_cast<const void*>(x + static_cast<std::size_t>(j) * n)
                               : send_.data() + cap_ * static_cast<std::size_t>(j);
        peer_[t_.isend(msg, cap_, j, kTagScatter)] = -1;
      }
      batch.end();
      return true;
    }
    if (stage_ == 1 && device_) {
      flag_.post(t_);
      return true;
    }
    if (device_) flag_.settle(x_, P, p_.timeout_s);
    // Every send has completed, so writing out_ cannot disturb one reading the input.
    if (p_.op == ReduceOp::Avg) x_.divide(acc_.data(), n, P);
    x_.copy(out_, acc_.data(), n * sizeof(float));
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
    Timed tm(decode_s, "decode");
    const std::byte* m = recv_.data() + cap_ * static_cast<std::size_t>(j);
    if (raw_) {
      x_.add(acc_.data(), reinterpret_cast<const float*>(m), p_.count);
    } else {
      x_.decode_add(codec_, m, cap_, acc_.data(), p_.count);
    }
  }

 private:
  AlgoParams p_;
  Codec codec_;
  int me_ = 0, next_ = 1;  // next_: offset from me_ of the next block to add
  bool raw_ = false;
  std::size_t cap_ = 0;
  exec::Work<std::byte> send_, recv_;
  exec::Work<float> acc_, res_;
  AgreedFlag flag_;  // device executors
  std::vector<int> peer_;
  std::vector<char> ready_;
};

}  // namespace

std::unique_ptr<Algorithm> make_reduce_scatter(Transport& t, const AlgoParams& p) {
  return std::make_unique<ReduceScatter>(t, p);
}

}  // namespace gradwire::coll
