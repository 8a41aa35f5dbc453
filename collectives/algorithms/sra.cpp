// Scatter-reduce-allgather over a dense codec (docs/compressed-collectives.md, "SRA").
#include "collectives/algorithms.hpp"
#include "collectives/staged.hpp"

#include <algorithm>
#include <vector>

#include "collectives/overlap.hpp"
#include "collectives/run_error.hpp"
#include "collectives/shards.hpp"
#include "gradwire/error.hpp"

namespace gradwire::coll {
namespace {

class Sra final : public Staged {
 public:
  Sra(Transport& t, const AlgoParams& p) : Staged(t, *p.x), p_(p), codec_(p.codec) {
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
    send_ = exec::Work<std::byte>(x_, moff_[P]);
    recv_ = exec::Work<std::byte>(x_, cap_[me_] * static_cast<std::size_t>(P));
    own2_ = exec::Work<std::byte>(x_, cap_[me_]);
    acc_ = exec::Work<float>(x_, len(me_));
    ready_.assign(static_cast<std::size_t>(P), 0);
    if (device_) flag_.init(x_);
    peer_.resize(done_.size());
    // GRADWIRE_OVERLAP=1 (host executors and transports only: overlap_chunk answers 0 for
    // device ones): send each chunk as soon as it is encoded (scatter_overlapped). Off by
    // default: on the only machine it was measured on (2 cores, oversubscribed, loaded) it
    // was 0.8-1.4x the plain order (bench/results/sra-overlap.md).
    overlap_ = overlap_chunk(t, p) > 0;
    if (p.error_feedback) {
      res1_ = exec::Work<float>(x_, p.count);
      res2_ = exec::Work<float>(x_, len(me_));
      exec::Executor* where = device_ ? &x_ : nullptr;
      slots.push_back({res1_.data(), 0, p.count, true, where});
      slots.push_back({res2_.data(), off_[me_], len(me_), false, where});
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
      if (device_) flag_.check(x_, p_.codec, in, p_.error_feedback ? res1_.data() : nullptr, p_.count, P, me_);
      {
        Timed tm(encode_s, "encode");
        // Every chunk, the own one too: each rank's input is rounded once, the same way.
        try {
          for (int j = 0; j < P; ++j) {
            if (!len(j)) continue;
            x_.encode(codec_, in + off_[j], DType::Float32, len(j), off_[j], p_.seed, step_,
                      send_.data() + moff_[j], cap_[j],
                      p_.error_feedback ? res1_.data() + off_[j] : nullptr);
          }
        } catch (const Error& e) {
          // Not input-dependent, or a device executor's (its messages are not host memory).
          if (e.code() != ErrorCode::InvalidArgument || device_) throw;
          // Non-finite input: every chunk carries the error record instead (run_error.hpp).
          err_ = non_finite_at(me_, in, p_.error_feedback ? res1_.data() : nullptr, p_.count, 0);
          for (int j = 0; j < P; ++j)
            if (len(j)) write_run_error(err_, send_.data() + moff_[j]);
        }
      }
      if (len(me_)) own_chunk();  // a rank may own no chunk when count is small
      // Receives and sends in one group (NCCL would wait forever on a receive posted alone),
      // and nothing else in it: what can fail runs before, so the group only posts.
      Batch batch(t_);
      if (len(me_)) own_receives();
      for (int j = 0; j < P; ++j) {
        if (j != me_ && len(j))
          peer_[t_.isend(send_.data() + moff_[j], cap_[j], j, kTagReduce)] = -1;
      }
      batch.end();
      return true;
    }
    if (stage_ == 1) {
      if (len(me_) && err_.set()) {
        write_run_error(err_, own2_.data());  // passed on to every rank
      } else if (len(me_)) {
        if (p_.op == ReduceOp::Avg) x_.divide(acc_.data(), len(me_), P);
        {
          Timed tm(encode_s, "encode");
          // A second seed: the re-encode's random bits must not repeat the first rounding's.
          x_.encode(codec_, acc_.data(), DType::Float32, len(me_), off_[me_],
                    p_.seed ^ 0x9e3779b97f4a7c15ull, step_, own2_.data(), cap_[me_],
                    p_.error_feedback ? res2_.data() : nullptr);
        }
        Timed tm(decode_s, "decode");
        x_.decode(codec_, own2_.data(), cap_[me_], out + off_[me_], DType::Float32, len(me_));
      }
      Batch batch(t_);
      for (int j = 0; j < P; ++j) {
        if (j != me_ && len(j))
          peer_[t_.irecv(send_.data() + moff_[j], cap_[j], j, kTagGather)] = j;
      }
      for (int j = 0; j < P; ++j) {
        if (j != me_ && len(me_)) peer_[t_.isend(own2_.data(), cap_[me_], j, kTagGather)] = -1;
      }
      batch.end();
      return true;
    }
    if (stage_ == 2 && device_) {
      flag_.post(t_);
      return true;
    }
    if (device_) flag_.settle(x_, P, p_.timeout_s);
    if (err_.set()) err_.raise();
    return false;
  }

  // Stage 0, once this rank's own chunk is encoded: it starts the accumulator...
  void own_chunk() {
    std::fill(ready_.begin(), ready_.end(), 0);
    next_ = 1;
    x_.zero(acc_.data(), acc_.bytes());
    if (!err_.set()) {
      Timed tm(decode_s, "decode");
      x_.decode_add(codec_, send_.data() + moff_[me_], cap_[me_], acc_.data(), len(me_));
    }
  }
  // ... and the peers' chunks of it are awaited.
  void own_receives() {
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
      Timed tm(encode_s, "encode");
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
      own_chunk();
      own_receives();
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

  // Scatter: the chunks are added in a fixed order, me+1, me+2, ... mod P, each as soon as it
  // and its predecessors have arrived (as reduce-scatter does), so a run's bits do not depend
  // on timing: the same on every run, on the loopback tier, and on a device executor.
  void arrived(int op) override {
    const int j = peer_[static_cast<std::size_t>(op)];
    if (j < 0) return;  // a send
    if (stage_ != 0) return take(j);
    const int P = t_.size();
    ready_[static_cast<std::size_t>(j)] = 1;
    while (next_ < P && ready_[static_cast<std::size_t>((me_ + next_) % P)]) take((me_ + next_++) % P);
  }

  void take(int j) {
    Timed tm(decode_s, "decode");
    const std::byte* msg = stage_ == 0 ? recv_.data() + cap_[me_] * j : send_.data() + moff_[j];
    const std::size_t bytes = stage_ == 0 ? cap_[me_] : cap_[j];
    RunError theirs;
    // Device messages are not read on the host: their errors travel in the flag (AgreedFlag).
    if (!device_ && read_run_error(msg, bytes, &theirs)) return err_.merge(theirs);
    if (err_.set()) return;  // the result is void anyway
    try {
      if (stage_ == 0) {
        x_.decode_add(codec_, msg, bytes, acc_.data(), len(me_));
      } else {
        x_.decode(codec_, msg, bytes, static_cast<float*>(out_) + off_[j], DType::Float32, len(j));
      }
    } catch (const Error& e) {
      if (e.code() != ErrorCode::WireFormat || stage_ != 0 || device_) throw;
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
  exec::Work<std::byte> send_, recv_, own2_;
  exec::Work<float> acc_, res1_, res2_;
  AgreedFlag flag_;  // device executors
  std::vector<int> peer_;
  std::vector<char> ready_;  // scatter: chunks arrived; next_: offset of the next to add
  int next_ = 1;
  RunError err_;
  bool overlap_ = false;
};

}  // namespace

std::unique_ptr<Algorithm> make_sra(Transport& t, const AlgoParams& p) {
  return std::make_unique<Sra>(t, p);
}

}  // namespace gradwire::coll
