// Shared-grid integer reduce: one agreed grid per bucket, codes packed in widened lanes and
// summed as plain integers (docs/compressed-collectives.md, "Shared grid").
#include "collectives/algorithms.hpp"
#include "collectives/staged.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "codec/grid.hpp"
#include "collectives/run_error.hpp"
#include "gradwire/error.hpp"

namespace gradwire::coll {
namespace {

class SharedGrid final : public Staged {
 public:
  SharedGrid(Transport& t, const AlgoParams& p) : Staged(t), p_(p) {
    if (p.codec.kind != CodecKind::Quantize) {
      throw Error(ErrorCode::InvalidArgument,
                  "gradwire: algorithm shared-grid needs a quantize codec (q1, q2, q4, q8), not '" +
                      p.codec.to_string() + "'");
    }
    const int P = t.size();
    me_ = t.rank();
    bucket_ = p.codec.bucket;
    levels_ = (1u << p.codec.bits) - 1;
    int extra = 0;
    while ((1 << extra) < P) ++extra;  // ceil(log2 P): the lane holds P * levels
    width_ = p.codec.bits + static_cast<unsigned>(extra);
    if (width_ > 32) {
      throw Error(ErrorCode::Unsupported, "gradwire: shared-grid: " + std::to_string(P) +
                                              " ranks need lanes wider than 32 bits");
    }
    per_word_ = 64 / width_;
    nb_ = grid::bucket_count(p.count, bucket_);
    off_ = chunk_offsets(p.count, bucket_, P);
    woff_.resize(static_cast<std::size_t>(P) + 1, 0);
    for (int r = 0; r < P; ++r) woff_[r + 1] = woff_[r] + words(len(r));
    wsend_.resize(woff_[P]);
    wrecv_.resize(words(len(me_)) * static_cast<std::size_t>(P));
    wacc_.resize(words(len(me_)));
    q_.resize(p.count);
    mm_.resize(2 * nb_ + 1);  // + one lane: P - (rank that found non-finite input), else 0
    lo_.resize(nb_);
    hi_.resize(nb_);
    peer_.resize(done_.size());
    if (p.error_feedback) {
      v_.resize(p.count);
      res_.assign(p.count, 0.0f);
      slots.push_back({res_.data(), 0, p.count, true});
    }
  }

 protected:
  std::size_t len(int r) const { return off_[r + 1] - off_[r]; }
  std::size_t words(std::size_t n) const { return (n + per_word_ - 1) / per_word_; }

  void pack(const std::uint32_t* q, std::size_t n, std::uint64_t* w) const {
    for (std::size_t k = 0, i = 0; i < n; ++k) {
      std::uint64_t word = 0;
      for (unsigned l = 0; l < per_word_ && i < n; ++l, ++i)
        word |= static_cast<std::uint64_t>(q[i]) << (l * width_);
      w[k] = word;
    }
  }
  void unpack(const std::uint64_t* w, std::size_t n, std::uint32_t* q) const {
    const std::uint64_t mask = (std::uint64_t{1} << width_) - 1;
    for (std::size_t k = 0, i = 0; i < n; ++k)
      for (unsigned l = 0; l < per_word_ && i < n; ++l, ++i)
        q[i] = static_cast<std::uint32_t>((w[k] >> (l * width_)) & mask);
  }

  bool advance() override {
    const int P = t_.size();
    if (stage_ == 0) {
      if (p_.count == 0) return false;
      const float* x = static_cast<const float*>(in_);
      if (p_.error_feedback) {
        for (std::size_t i = 0; i < p_.count; ++i) v_[i] = x[i] + res_[i];
        x = v_.data();
      }
      src_ = x;
      Timed tm(encode_s, "encode");
      float flag = 0.0f;
      try {
        grid::bucket_minmax(x, p_.count, bucket_, lo_.data(), hi_.data());
      } catch (const Error& e) {
        if (e.code() != ErrorCode::InvalidArgument) throw;
        // Non-finite input: the range reduction carries the news (run_error.hpp).
        std::fill(lo_.begin(), lo_.end(), 0.0f);
        std::fill(hi_.begin(), hi_.end(), 0.0f);
        flag = static_cast<float>(P - me_);
      }
      // One MAX reduction agrees on both ends: max(-lo) = -min(lo).
      for (std::size_t b = 0; b < nb_; ++b) {
        mm_[b] = -lo_[b];
        mm_[nb_ + b] = hi_[b];
      }
      mm_[2 * nb_] = flag;
      t_.iallreduce(mm_.data(), 2 * nb_ + 1, Elem::F32, Reduce::Max);
      return true;
    }
    if (stage_ == 1) {
      if (mm_[2 * nb_] > 0.0f) {  // every rank sees it: the lowest such rank's error
        RunError e;
        e.origin = P - static_cast<int>(mm_[2 * nb_]);
        e.raise();  // (without the index: only the origin knows it)
      }
      Timed tm(encode_s, "encode");
      for (std::size_t b = 0; b < nb_; ++b) {
        lo_[b] = -mm_[b];
        hi_[b] = mm_[nb_ + b];
        if (p_.codec.scale == ScaleMode::AbsMax) {
          const float m = std::max(std::fabs(lo_[b]), std::fabs(hi_[b]));
          lo_[b] = -m;
          hi_[b] = m;
        }
      }
      grid::quantize(src_, p_.count, bucket_, lo_.data(), hi_.data(), levels_, p_.codec.round,
                     p_.seed, step_, 0, q_.data());
      if (p_.error_feedback) {
        // residual = v - (its value on the grid); v_ is free again once copied.
        std::memcpy(res_.data(), v_.data(), p_.count * sizeof(float));
        grid::dequantize_sum(q_.data(), p_.count, bucket_, lo_.data(), hi_.data(), levels_, 1,
                             v_.data());
        for (std::size_t i = 0; i < p_.count; ++i) res_[i] -= v_[i];
      }
      for (int j = 0; j < P; ++j) pack(q_.data() + off_[j], len(j), wsend_.data() + woff_[j]);
      std::copy_n(wsend_.data() + woff_[me_], wacc_.size(), wacc_.data());
      const std::size_t wb = wacc_.size() * 8;
      if (wb) {
        for (int j = 0; j < P; ++j)
          if (j != me_) peer_[t_.irecv(wrecv_.data() + wacc_.size() * j, wb, j, kTagReduce)] = j;
      }
      Batch batch(t_);
      for (int j = 0; j < P; ++j) {
        const std::size_t nw = woff_[j + 1] - woff_[j];
        if (j != me_ && nw) peer_[t_.isend(wsend_.data() + woff_[j], nw * 8, j, kTagReduce)] = -1;
      }
      batch.end();
      return true;
    }
    if (stage_ == 2) {
      // The reduced lanes travel back exactly: no decode or re-encode.
      std::copy_n(wacc_.data(), wacc_.size(), wsend_.data() + woff_[me_]);
      for (int j = 0; j < P; ++j) {
        const std::size_t nw = woff_[j + 1] - woff_[j];
        if (j != me_ && nw) peer_[t_.irecv(wsend_.data() + woff_[j], nw * 8, j, kTagGather)] = -1;
      }
      Batch batch(t_);
      for (int j = 0; j < P; ++j)
        if (j != me_ && !wacc_.empty())
          peer_[t_.isend(wacc_.data(), wacc_.size() * 8, j, kTagGather)] = -1;
      batch.end();
      return true;
    }
    Timed tm(decode_s, "decode");
    for (int j = 0; j < P; ++j) unpack(wsend_.data() + woff_[j], len(j), q_.data() + off_[j]);
    float* out = static_cast<float*>(out_);
    grid::dequantize_sum(q_.data(), p_.count, bucket_, lo_.data(), hi_.data(), levels_,
                         static_cast<std::uint32_t>(P), out);
    if (p_.op == ReduceOp::Avg) scale(out, p_.count, P);
    return false;
  }

  void arrived(int op) override {
    const int j = peer_[static_cast<std::size_t>(op)];
    if (stage_ != 1 || j < 0) return;
    // Lanes are wide enough for the sum of P codes, so packed words add as plain integers.
    const std::uint64_t* w = wrecv_.data() + wacc_.size() * j;
    for (std::size_t k = 0; k < wacc_.size(); ++k) wacc_[k] += w[k];
  }

 private:
  AlgoParams p_;
  int me_ = 0;
  std::uint32_t bucket_ = 0, levels_ = 0;
  unsigned width_ = 0, per_word_ = 0;
  std::size_t nb_ = 0;
  std::vector<std::size_t> off_, woff_;
  std::vector<std::uint64_t> wsend_, wrecv_, wacc_;
  std::vector<std::uint32_t> q_;
  std::vector<float> mm_, lo_, hi_, v_, res_;
  std::vector<int> peer_;
  const float* src_ = nullptr;
};

}  // namespace

std::unique_ptr<Algorithm> make_shared_grid(Transport& t, const AlgoParams& p) {
  return std::make_unique<SharedGrid>(t, p);
}

}  // namespace gradwire::coll
