#include "collectives/algorithms.hpp"
#include "collectives/staged.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>

#include "codec/grid.hpp"
#include "collectives/dgc.hpp"
#include "collectives/run_error.hpp"
#include "collectives/shards.hpp"
#include "gradwire/error.hpp"
#include "transport/element_ops.hpp"

namespace gradwire::coll {
namespace {

constexpr int kTagReduce = 1, kTagGather = 2;

// ---------------------------------------------------------------------------------------
// Dense allreduce (the engine's)

class DenseAllreduce final : public Staged {
 public:
  DenseAllreduce(Transport& t, const AlgoParams& p) : Staged(t), p_(p) {}

 protected:
  bool advance() override {
    const std::size_t esz = dtype_size(p_.dtype);
    if (stage_ == 0) {
      if (p_.count == 0) return false;
      const bool is16 = p_.dtype != DType::Float32;
      if (is16 && p_.op == ReduceOp::Avg) {
        // Pre-divided by P, rounded once: no partial sum can overflow (docs/collectives.md).
        detail::predivide16(in_, out_, p_.count, p_.dtype, t_.size());
      } else if (in_ != out_) {
        std::memmove(out_, in_, p_.count * esz);
      }
      const Elem e = p_.dtype == DType::Float32   ? Elem::F32
                     : p_.dtype == DType::Float16 ? Elem::F16
                                                  : Elem::BF16;
      t_.iallreduce(out_, p_.count, e, Reduce::Sum);
      return true;
    }
    if (p_.dtype == DType::Float32 && p_.op == ReduceOp::Avg)
      scale(static_cast<float*>(out_), p_.count, t_.size());
    return false;
  }

 private:
  AlgoParams p_;
};

// ---------------------------------------------------------------------------------------
// Scatter-reduce-allgather

class Sra final : public Staged {
 public:
  Sra(Transport& t, const AlgoParams& p) : Staged(t), p_(p), codec_(p.codec) {
    if (codec_.sparse()) {
      throw Error(ErrorCode::InvalidArgument,
                  "gradwire: algorithm sra needs a dense codec, not '" + p.codec.to_string() + "'");
    }
    const int P = t.size();
    me_ = t.rank();
    const std::size_t unit = codec_.bucket_size() ? codec_.bucket_size() : 1;
    off_ = shard_offsets(p.count, unit, P, p.shard_weights);  // even unless balanced
    cap_.resize(static_cast<std::size_t>(P));
    moff_.resize(static_cast<std::size_t>(P) + 1, 0);
    for (int r = 0; r < P; ++r) {
      cap_[r] = len(r) ? codec_.max_encoded_bytes(len(r)) : 0;
      moff_[r + 1] = moff_[r] + cap_[r];
    }
    send_.resize(moff_[P]);
    recv_.resize(cap_[me_] * static_cast<std::size_t>(P));
    own2_.resize(cap_[me_]);
    acc_.resize(len(me_));
    peer_.resize(done_.size());
    // GRADWIRE_SRA_OVERLAP=1 (host transports): send each chunk as soon as it is encoded
    // (scatter_overlapped). Off by default: on the only machine it was measured on (2 cores,
    // oversubscribed, loaded) it was 0.8-1.4x the plain order (bench/results/sra-overlap.md).
    const char* ov = std::getenv("GRADWIRE_SRA_OVERLAP");
    overlap_ = t.stream() == nullptr && ov && std::string(ov) == "1";
    if (p.error_feedback) {
      res1_.assign(p.count, 0.0f);
      res2_.assign(len(me_), 0.0f);
      slots.push_back({res1_.data(), 0, p.count, true});
      slots.push_back({res2_.data(), off_[me_], len(me_), false});
    }
  }

 protected:
  std::size_t len(int r) const { return off_[r + 1] - off_[r]; }

  bool advance() override {
    const int P = t_.size();
    float* out = static_cast<float*>(out_);
    if (stage_ == 0) {
      if (p_.count == 0) return false;
      const float* in = static_cast<const float*>(in_);
      err_ = RunError{};
      if (overlap_) return scatter_overlapped(in);
      {
        Timed tm(encode_s);
        // Every chunk, the own one too: each rank's input is rounded once, the same way.
        try {
          for (int j = 0; j < P; ++j) {
            if (!len(j)) continue;
            codec_.encode(in + off_[j], DType::Float32, len(j), off_[j], p_.seed, step_,
                          send_.data() + moff_[j], cap_[j],
                          p_.error_feedback ? res1_.data() + off_[j] : nullptr);
          }
        } catch (const Error& e) {
          if (e.code() != ErrorCode::InvalidArgument) throw;  // not input-dependent
          // Non-finite input: every chunk carries the error record instead (run_error.hpp).
          err_ = non_finite_at(me_, in, p_.error_feedback ? res1_.data() : nullptr, p_.count, 0);
          for (int j = 0; j < P; ++j)
            if (len(j)) write_run_error(err_, send_.data() + moff_[j]);
        }
      }
      if (len(me_)) own_chunk_and_receives();  // a rank may own no chunk when count is small
      t_.group_start();
      for (int j = 0; j < P; ++j) {
        if (j != me_ && len(j))
          peer_[t_.isend(send_.data() + moff_[j], cap_[j], j, kTagReduce)] = -1;
      }
      t_.group_end();
      return true;
    }
    if (stage_ == 1) {
      if (len(me_) && err_.set()) {
        write_run_error(err_, own2_.data());  // passed on to every rank
      } else if (len(me_)) {
        if (p_.op == ReduceOp::Avg) scale(acc_.data(), len(me_), P);
        {
          Timed tm(encode_s);
          // A second seed: the re-encode's random bits must not repeat the first rounding's.
          codec_.encode(acc_.data(), DType::Float32, len(me_), off_[me_],
                        p_.seed ^ 0x9e3779b97f4a7c15ull, step_, own2_.data(), cap_[me_],
                        p_.error_feedback ? res2_.data() : nullptr);
        }
        Timed tm(decode_s);
        codec_.decode(own2_.data(), cap_[me_], out + off_[me_], DType::Float32, len(me_));
      }
      for (int j = 0; j < P; ++j) {
        if (j != me_ && len(j))
          peer_[t_.irecv(send_.data() + moff_[j], cap_[j], j, kTagGather)] = j;
      }
      t_.group_start();
      for (int j = 0; j < P; ++j) {
        if (j != me_ && len(me_)) peer_[t_.isend(own2_.data(), cap_[me_], j, kTagGather)] = -1;
      }
      t_.group_end();
      return true;
    }
    if (err_.set()) err_.raise();
    return false;
  }

  // Stage 0, once this rank's own chunk is encoded: it starts the accumulator, and the
  // peers' chunks of it are awaited.
  void own_chunk_and_receives() {
    std::fill(acc_.begin(), acc_.end(), 0.0f);
    if (!err_.set()) {
      Timed tm(decode_s);
      codec_.decode_add(send_.data() + moff_[me_], cap_[me_], acc_.data(), len(me_));
    }
    for (int j = 0; j < t_.size(); ++j) {
      if (j == me_) continue;
      peer_[t_.irecv(recv_.data() + cap_[me_] * j, cap_[me_], j, kTagReduce)] = j;
    }
  }

  // Stage 0, pipelined: the own chunk first (encoded, decoded into the accumulator, as in the
  // plain order), then the receives, then each peer's chunk encoded and sent at once (nearest
  // peer first, so ranks do not all start with the same one), reporting arrivals between
  // encodes: chunk j's transfer and the decode of chunks already here overlap the encode of
  // the next. Each chunk is encoded exactly as in the plain order (same offsets, seed and
  // residual slice), so the messages are the same bits.
  bool scatter_overlapped(const float* in) {
    const int P = t_.size();
    auto encode = [&](int j) {
      Timed tm(encode_s);
      std::byte* msg = send_.data() + moff_[j];
      if (err_.set()) return write_run_error(err_, msg);
      try {
        codec_.encode(in + off_[j], DType::Float32, len(j), off_[j], p_.seed, step_, msg,
                      cap_[j], p_.error_feedback ? res1_.data() + off_[j] : nullptr);
      } catch (const Error& e) {
        if (e.code() != ErrorCode::InvalidArgument) throw;
        // As in the plain order; chunks already sent carried data, and the allgather stage
        // carries the record to those peers.
        err_ = non_finite_at(me_, in, p_.error_feedback ? res1_.data() : nullptr, p_.count, 0);
        write_run_error(err_, msg);
      }
    };
    if (len(me_)) {
      encode(me_);
      own_chunk_and_receives();
    }
    for (int k = 1; k < P; ++k) {
      const int j = (me_ + k) % P;
      if (!len(j)) continue;
      encode(j);
      peer_[t_.isend(send_.data() + moff_[j], cap_[j], j, kTagReduce)] = -1;
      const int n = t_.test_some(done_.data());
      for (int i = 0; i < n; ++i) arrived(done_[static_cast<std::size_t>(i)]);
    }
    return true;
  }

  void arrived(int op) override {
    const int j = peer_[static_cast<std::size_t>(op)];
    if (j < 0) return;  // a send
    Timed tm(decode_s);
    const std::byte* msg = stage_ == 0 ? recv_.data() + cap_[me_] * j : send_.data() + moff_[j];
    const std::size_t bytes = stage_ == 0 ? cap_[me_] : cap_[j];
    RunError theirs;
    if (read_run_error(msg, bytes, &theirs)) return err_.merge(theirs);
    if (err_.set()) return;  // the result is void anyway
    try {
      if (stage_ == 0) {
        codec_.decode_add(msg, bytes, acc_.data(), len(me_));
      } else {
        codec_.decode(msg, bytes, static_cast<float*>(out_) + off_[j], DType::Float32, len(j));
      }
    } catch (const Error& e) {
      if (e.code() != ErrorCode::WireFormat || stage_ != 0) throw;
      // Passed on in the allgather stage. (A malformed message there has no later stage to
      // carry the news: that rank alone fails.)
      err_.merge({me_, RunError::Malformed, static_cast<std::uint64_t>(j)});
    }
  }

 private:
  AlgoParams p_;
  Codec codec_;
  int me_ = 0;
  std::vector<std::size_t> off_, cap_, moff_;
  std::vector<std::byte> send_, recv_, own2_;
  std::vector<float> acc_, res1_, res2_;
  std::vector<int> peer_;
  RunError err_;
  bool overlap_ = false;
};

// ---------------------------------------------------------------------------------------
// Shared-grid integer reduce

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
      Timed tm(encode_s);
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
      Timed tm(encode_s);
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
      t_.group_start();
      for (int j = 0; j < P; ++j) {
        const std::size_t nw = woff_[j + 1] - woff_[j];
        if (j != me_ && nw) peer_[t_.isend(wsend_.data() + woff_[j], nw * 8, j, kTagReduce)] = -1;
      }
      t_.group_end();
      return true;
    }
    if (stage_ == 2) {
      // The reduced lanes travel back exactly: no decode or re-encode.
      std::copy_n(wacc_.data(), wacc_.size(), wsend_.data() + woff_[me_]);
      for (int j = 0; j < P; ++j) {
        const std::size_t nw = woff_[j + 1] - woff_[j];
        if (j != me_ && nw) peer_[t_.irecv(wsend_.data() + woff_[j], nw * 8, j, kTagGather)] = -1;
      }
      t_.group_start();
      for (int j = 0; j < P; ++j)
        if (j != me_ && !wacc_.empty())
          peer_[t_.isend(wacc_.data(), wacc_.size() * 8, j, kTagGather)] = -1;
      t_.group_end();
      return true;
    }
    Timed tm(decode_s);
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

// ---------------------------------------------------------------------------------------
// Sparse allreduce

class Sparse final : public Staged {
 public:
  Sparse(Transport& t, const AlgoParams& p) : Staged(t), p_(p), codec_(p.codec), cur_(p.codec) {
    if (!codec_.sparse()) {
      throw Error(ErrorCode::InvalidArgument,
                  "gradwire: algorithm sparse-allgather needs a sparse codec (topk, randk, "
                  "threshold), not '" + p.codec.to_string() + "'");
    }
    randk_ = p.codec.kind == CodecKind::RandK;
    if (randk_ && p.codec.value != ValueType::F32) {
      throw Error(ErrorCode::Unsupported,
                  "gradwire: random-k plans sum the chosen values with a dense allreduce and "
                  "need value=f32");
    }
    const int P = t.size();
    // Warm-up steps carry more values than the codec's k: size for the widest.
    cap_ = p.dgc ? Codec(p.dgc->widest_spec()).max_encoded_bytes(p.count)
                 : codec_.max_encoded_bytes(p.count);
    msg_.resize(cap_);
    if (!randk_) {
      if (cap_ * static_cast<std::size_t>(P) > 0x7fffffffu) {
        throw Error(ErrorCode::Unsupported,
                    "gradwire: sparse-allgather: P * message bound exceeds MPI's int count");
      }
      gather_.resize(cap_ * static_cast<std::size_t>(P));
      sizes_.resize(static_cast<std::size_t>(P));
      counts_.resize(static_cast<std::size_t>(P));
      displs_.resize(static_cast<std::size_t>(P));
    }
    if (p.error_feedback) {
      res_.assign(p.count, 0.0f);
      slots.push_back({res_.data(), 0, p.count, true});
    }
  }

 protected:
  bool advance() override {
    const int P = t_.size();
    float* out = static_cast<float*>(out_);
    if (stage_ == 0) {
      if (p_.count == 0) return false;
      {
        Timed tm(encode_s);
        if (p_.dgc) cur_ = Codec(p_.dgc->spec_at(step_));  // the warm-up density of this step
        bytes_ = cur_.encode(in_, DType::Float32, p_.count, 0, p_.seed, step_, msg_.data(), cap_,
                             p_.error_feedback ? res_.data() : nullptr);
        if (p_.dgc && !p_.dgc->velocity().empty()) {
          // Momentum factor masking: the elements this message carries restart their velocity.
          float* carried = p_.dgc->scratch();
          if (carried) {
            cur_.decode(msg_.data(), bytes_, carried, DType::Float32, p_.count);
            p_.dgc->mask(carried);
          }
        }
      }
      if (randk_) {
        // Every rank chose the same elements (seed, step, index): sum the values in place,
        // and the message, header unchanged, now carries the sums.
        std::uint32_t nnz = 0;
        std::memcpy(&nnz, msg_.data() + 20, 4);
        t_.iallreduce(msg_.data() + 56, nnz, Elem::F32, Reduce::Sum);
        return true;
      }
      own_ = bytes_;
      t_.iallgather(&own_, sizes_.data(), sizeof(std::uint64_t));
      return true;
    }
    if (randk_) {
      if (stage_ == 1) {
        Timed tm(decode_s);
        cur_.decode(msg_.data(), bytes_, out, DType::Float32, p_.count);
        if (p_.op == ReduceOp::Avg) scale(out, p_.count, P);
      }
      return false;
    }
    if (stage_ == 1) {
      std::uint64_t total = 0;
      for (int r = 0; r < P; ++r) total += sizes_[r];
      // Byte costs per rank, ring algorithms: gathering the payloads moves (P-1)/P of their
      // total, a dense float32 allreduce 2 (P-1)/P of 4n bytes. Decided from the gathered
      // sizes, so every rank takes the same branch.
      dense_ = P > 1 && total > 8 * static_cast<std::uint64_t>(p_.count);
      if (dense_) {
        Timed tm(decode_s);
        // What this rank meant to send is v = x + e_old = decode(message) + e_new: send all
        // of it uncompressed and keep no residual.
        cur_.decode(msg_.data(), bytes_, out, DType::Float32, p_.count);
        if (p_.error_feedback) {
          for (std::size_t i = 0; i < p_.count; ++i) out[i] += res_[i];
          std::fill(res_.begin(), res_.end(), 0.0f);
        }
        if (p_.dgc) p_.dgc->mask_all();  // every element goes out
        t_.iallreduce(out, p_.count, Elem::F32, Reduce::Sum);
        return true;
      }
      std::size_t at = 0;
      for (int r = 0; r < P; ++r) {
        counts_[r] = static_cast<int>(sizes_[r]);
        displs_[r] = static_cast<int>(at);
        at += cap_;
      }
      t_.iallgatherv(msg_.data(), bytes_, gather_.data(), counts_.data(), displs_.data());
      return true;
    }
    if (stage_ == 2) {
      Timed tm(decode_s);
      if (!dense_) {
        std::fill(out, out + p_.count, 0.0f);
        // Rank order, not arrival order: every rank adds the same terms in the same order.
        for (int r = 0; r < P; ++r)
          cur_.decode_add(gather_.data() + displs_[r], sizes_[r], out, p_.count);
      }
      if (p_.op == ReduceOp::Avg) scale(out, p_.count, P);
    }
    return false;
  }

 private:
  AlgoParams p_;
  Codec codec_;
  Codec cur_;  // this step's codec (codec_ but for the DGC warm-up density)
  bool randk_ = false, dense_ = false;
  std::size_t cap_ = 0, bytes_ = 0;
  std::uint64_t own_ = 0;
  std::vector<std::byte> msg_, gather_;
  std::vector<std::uint64_t> sizes_;
  std::vector<int> counts_, displs_;
  std::vector<float> res_;
};

// ---------------------------------------------------------------------------------------
// Allgather

class DenseAllgather final : public Staged {
 public:
  DenseAllgather(Transport& t, const AlgoParams& p) : Staged(t), p_(p) {}

 protected:
  bool advance() override {
    if (stage_ > 0 || p_.count == 0) return false;
    const std::size_t block = p_.count * dtype_size(p_.dtype);
    std::byte* own = static_cast<std::byte*>(out_) + block * static_cast<std::size_t>(t_.rank());
    if (own != in_) std::memmove(own, in_, block);
    t_.iallgather(nullptr, out_, block);  // in place: the own block is already there
    return true;
  }

 private:
  AlgoParams p_;
};

// A size with this bit set: the rank could not encode (the rest: RunError::value).
constexpr std::uint64_t kFailedSize = std::uint64_t{1} << 63;

class CompressedAllgather final : public Staged {
 public:
  CompressedAllgather(Transport& t, const AlgoParams& p) : Staged(t), p_(p), codec_(p.codec) {
    const int P = t.size();
    cap_ = codec_.max_encoded_bytes(p.count);
    if (cap_ * static_cast<std::size_t>(P) > 0x7fffffffu) {
      throw Error(ErrorCode::Unsupported,
                  "gradwire: compressed allgather: P * message bound exceeds MPI's int count");
    }
    msg_.resize(cap_);
    gather_.resize(cap_ * static_cast<std::size_t>(P));
    sizes_.resize(static_cast<std::size_t>(P));
    counts_.resize(static_cast<std::size_t>(P));
    displs_.resize(static_cast<std::size_t>(P));
    if (p.error_feedback && p.codec.kind != CodecKind::None) {
      res_.assign(p.count, 0.0f);
      slots.push_back({res_.data(), p.count * static_cast<std::size_t>(t.rank()), p.count, true});
    }
  }

 protected:
  bool advance() override {
    const int P = t_.size();
    if (stage_ == 0) {
      if (p_.count == 0) return false;
      const std::size_t goff = p_.count * static_cast<std::size_t>(t_.rank());
      {
        Timed tm(encode_s);
        try {
          own_ = codec_.encode(in_, p_.dtype, p_.count, goff, p_.seed, step_, msg_.data(), cap_,
                               res_.empty() ? nullptr : res_.data());
        } catch (const Error& e) {
          if (e.code() != ErrorCode::InvalidArgument) throw;
          // Non-finite input: the size exchange carries the news (run_error.hpp).
          const RunError r =
              p_.dtype == DType::Float32
                  ? non_finite_at(t_.rank(), static_cast<const float*>(in_),
                                  res_.empty() ? nullptr : res_.data(), p_.count, goff)
                  : RunError{};  // (16-bit input: where is not looked up)
          own_ = kFailedSize | r.value;
        }
      }
      t_.iallgather(&own_, sizes_.data(), sizeof(std::uint64_t));
      return true;
    }
    if (stage_ == 1) {
      for (int r = 0; r < P; ++r) {
        if (sizes_[r] & kFailedSize) {  // every rank sees the same sizes: the lowest such rank
          RunError e;
          e.origin = r;
          e.value = sizes_[r] & ~kFailedSize;
          e.raise();
        }
      }
      for (int r = 0; r < P; ++r) {
        counts_[r] = static_cast<int>(sizes_[r]);
        displs_[r] = static_cast<int>(cap_ * static_cast<std::size_t>(r));
      }
      t_.iallgatherv(msg_.data(), own_, gather_.data(), counts_.data(), displs_.data());
      return true;
    }
    if (stage_ == 2) {
      Timed tm(decode_s);
      const std::size_t block = p_.count * dtype_size(p_.dtype);
      // The own block too: every rank ends with the same decoded bits.
      for (int r = 0; r < P; ++r)
        codec_.decode(gather_.data() + displs_[r], sizes_[r],
                      static_cast<std::byte*>(out_) + block * static_cast<std::size_t>(r), p_.dtype,
                      p_.count);
    }
    return false;
  }

 private:
  AlgoParams p_;
  Codec codec_;
  std::size_t cap_ = 0;
  std::uint64_t own_ = 0;
  std::vector<std::byte> msg_, gather_;
  std::vector<std::uint64_t> sizes_;
  std::vector<int> counts_, displs_;
  std::vector<float> res_;
};

// ---------------------------------------------------------------------------------------
// Hierarchical

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

std::unique_ptr<Algorithm> make_dense_allreduce(Transport& t, const AlgoParams& p) {
  return std::make_unique<DenseAllreduce>(t, p);
}
std::unique_ptr<Algorithm> make_sra(Transport& t, const AlgoParams& p) {
  return std::make_unique<Sra>(t, p);
}
std::unique_ptr<Algorithm> make_shared_grid(Transport& t, const AlgoParams& p) {
  return std::make_unique<SharedGrid>(t, p);
}
std::unique_ptr<Algorithm> make_sparse(Transport& t, const AlgoParams& p) {
  return std::make_unique<Sparse>(t, p);
}
std::unique_ptr<Algorithm> make_dense_allgather(Transport& t, const AlgoParams& p) {
  return std::make_unique<DenseAllgather>(t, p);
}
std::unique_ptr<Algorithm> make_compressed_allgather(Transport& t, const AlgoParams& p) {
  return std::make_unique<CompressedAllgather>(t, p);
}
std::unique_ptr<Algorithm> make_hier(Transport& local, std::unique_ptr<Algorithm> inner,
                                     const AlgoParams& p, int global_size) {
  return std::make_unique<Hier>(local, std::move(inner), p, global_size);
}

}  // namespace gradwire::coll
