// Compressed allgather: each block encoded once, sizes then messages gathered, every block
// decoded by every rank (its own too, so all end with the same bits). Pipelined (host paths,
// GRADWIRE_OVERLAP, collectives/overlap.hpp): the block in bucket-aligned chunks, each sent to
// every peer as soon as it is encoded and each peer's decoded the moment it lands.
#include "collectives/algorithms.hpp"
#include "collectives/staged.hpp"

#include <vector>

#include "collectives/overlap.hpp"
#include "collectives/run_error.hpp"
#include "gradwire/error.hpp"

namespace gradwire::coll {
namespace {

// A size with this bit set: the rank could not encode (the rest: RunError::value).
constexpr std::uint64_t kFailedSize = std::uint64_t{1} << 63;

class CompressedAllgather final : public Staged {
 public:
  CompressedAllgather(Transport& t, const AlgoParams& p)
      : Staged(t, *p.x), p_(p), codec_(p.codec) {
    const int P = t.size();
    cap_ = codec_.max_encoded_bytes(p.count);
    if (cap_ * static_cast<std::size_t>(P) > 0x7fffffffu) {
      throw Error(ErrorCode::Unsupported,
                  "gradwire: compressed allgather: P * message bound exceeds MPI's int count");
    }
    if (device_ && (codec_.sparse() || p.dtype != DType::Float32))
      throw Error(ErrorCode::Unsupported, "gradwire: compressed allgather on the device: float32 and a dense codec");
    init_pipeline(t, p);  // its own buffers when it pipelines
    if (!chunks_) {
      msg_ = exec::Work<std::byte>(x_, cap_);
      gather_ = exec::Work<std::byte>(x_, cap_ * static_cast<std::size_t>(P));
    }
    if (device_) flag_.init(x_);
    sizes_.resize(static_cast<std::size_t>(P));
    counts_.resize(static_cast<std::size_t>(P));
    displs_.resize(static_cast<std::size_t>(P));
    if (p.error_feedback && p.codec.kind != CodecKind::None) {
      res_ = exec::Work<float>(x_, p.count);
      slots.push_back({res_.data(), p.count * static_cast<std::size_t>(t.rank()), p.count, true,
                       device_ ? &x_ : nullptr});
    }
  }

 protected:
  bool advance() override {
    const int P = t_.size();
    if (device_) return advance_device();
    if (chunks_ > 0) return advance_pipelined();
    if (stage_ == 0) {
      if (p_.count == 0) return false;
      const std::size_t goff = p_.count * static_cast<std::size_t>(t_.rank());
      {
        Timed tm(encode_s, "encode");
        try {
          own_ = x_.encode(codec_, in_, p_.dtype, p_.count, goff, p_.seed, step_, msg_.data(), cap_,
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
      Timed tm(decode_s, "decode");
      const std::size_t block = p_.count * dtype_size(p_.dtype);
      // The own block too: every rank ends with the same decoded bits.
      for (int r = 0; r < P; ++r)
        x_.decode(codec_, gather_.data() + displs_[r], sizes_[r],
                  static_cast<std::byte*>(out_) + block * static_cast<std::size_t>(r), p_.dtype,
                  p_.count);
    }
    return false;
  }

 private:
  // Chunked pipeline: only where chunks encode exactly as the whole block (dense codecs, cut
  // at bucket multiples: docs/codecs.md), so the decoded bits are those of the plain order.
  // Every chunk message has its bound's size (dense codecs), so no size exchange is needed.
  void init_pipeline(Transport& t, const AlgoParams& p) {
    std::size_t want = overlap_chunk(t, p);
    if (!want || device_ || codec_.sparse() || p.count == 0) return;
    want = pipeline_chunk(p.count, want);
    const std::size_t unit = codec_.bucket_size() ? codec_.bucket_size() : 1;
    const std::size_t step = (want + unit - 1) / unit * unit;
    const int P = t.size();
    chunks_ = static_cast<int>((p.count + step - 1) / step);
    coff_.resize(static_cast<std::size_t>(chunks_) + 1);
    ccap_.resize(static_cast<std::size_t>(chunks_));
    cmoff_.assign(static_cast<std::size_t>(chunks_) + 1, 0);
    for (int c = 0; c <= chunks_; ++c) coff_[c] = std::min(p.count, step * static_cast<std::size_t>(c));
    for (int c = 0; c < chunks_; ++c) {
      ccap_[c] = codec_.max_encoded_bytes(coff_[c + 1] - coff_[c]);
      cmoff_[c + 1] = cmoff_[c] + ccap_[c];
    }
    // Every chunk message of every rank, rank r's at r * cmoff_[chunks_].
    msg_ = exec::Work<std::byte>(x_, cmoff_[chunks_]);
    gather_ = exec::Work<std::byte>(x_, cmoff_[chunks_] * static_cast<std::size_t>(P));
    const std::size_t ops = 2 * static_cast<std::size_t>(P - 1) * static_cast<std::size_t>(chunks_);
    op_.assign(ops, -1);
    if (done_.size() < ops) done_.resize(ops);
  }

  // One stage: every receive posted, then each chunk encoded, sent to every peer and decoded
  // into the own block, with arrivals (decoded at once, arrived()) reported between chunks.
  // A rank whose input is not finite sends the error record in place of every chunk from the
  // first it could not encode (run_error.hpp); every rank receives every chunk, so every rank
  // fails the call with the same (lowest rank's) error, as in the plain order.
  bool advance_pipelined() {
    const int P = t_.size();
    if (stage_ == 1) {
      if (err_.set()) err_.raise();
      return false;
    }
    err_ = RunError{};
    const std::size_t all = cmoff_[chunks_];
    for (int c = 0; c < chunks_; ++c)
      for (int r = 0; r < P; ++r)
        if (r != t_.rank())
          op_[static_cast<std::size_t>(t_.irecv(gather_.data() + all * static_cast<std::size_t>(r) + cmoff_[c],
                                                 ccap_[c], r, kTagGather))] = r * chunks_ + c;
    const std::size_t goff = p_.count * static_cast<std::size_t>(t_.rank());
    const std::size_t block = p_.count * dtype_size(p_.dtype);
    const std::size_t esize = dtype_size(p_.dtype);
    for (int c = 0; c < chunks_; ++c) {
      std::byte* m = msg_.data() + cmoff_[c];
      const std::size_t at = coff_[c], n = coff_[c + 1] - at;
      {
        Timed tm(encode_s, "encode");
        if (err_.set()) {
          write_run_error(err_, m);
        } else {
          try {
            x_.encode(codec_, static_cast<const std::byte*>(in_) + at * esize, p_.dtype, n, goff + at,
                      p_.seed, step_, m, ccap_[c], res_.empty() ? nullptr : res_.data() + at);
          } catch (const Error& e) {
            if (e.code() != ErrorCode::InvalidArgument) throw;
            err_ = p_.dtype == DType::Float32
                       ? non_finite_at(t_.rank(), static_cast<const float*>(in_),
                                       res_.empty() ? nullptr : res_.data(), p_.count, goff)
                       : RunError{t_.rank(), RunError::NonFinite, 0};
            write_run_error(err_, m);
          }
        }
      }
      for (int k = 1; k < P; ++k) t_.isend(m, ccap_[c], (t_.rank() + k) % P, kTagGather);
      if (!err_.set()) {
        Timed tm(decode_s, "decode");
        x_.decode(codec_, m, ccap_[c],
                  static_cast<std::byte*>(out_) + block * static_cast<std::size_t>(t_.rank()) + at * esize,
                  p_.dtype, n);
      }
      const int got = t_.test_some(done_.data());
      for (int i = 0; i < got; ++i) arrived(done_[static_cast<std::size_t>(i)]);
    }
    return true;
  }

  // A peer's chunk: decoded into its place at once (blocks and chunks do not overlap, so the
  // arrival order cannot change a bit), or its error record kept.
  void arrived(int op) override {
    if (chunks_ == 0) return;
    const int who = op_[static_cast<std::size_t>(op)];
    if (who < 0) return;  // a send
    const int r = who / chunks_, c = who % chunks_;
    const std::byte* m = gather_.data() + cmoff_[chunks_] * static_cast<std::size_t>(r) + cmoff_[c];
    RunError theirs;
    if (read_run_error(m, ccap_[c], &theirs)) return err_.merge(theirs);
    if (err_.set()) return;  // the result is void anyway
    Timed tm(decode_s, "decode");
    const std::size_t esize = dtype_size(p_.dtype);
    x_.decode(codec_, m, ccap_[c],
              static_cast<std::byte*>(out_) + (p_.count * static_cast<std::size_t>(r) + coff_[c]) * esize,
              p_.dtype, coff_[c + 1] - coff_[c]);
  }

  // Device executors (float32, dense codecs: every message has the size cap_): one gather of
  // fixed-size messages beside the non-finite flag's allreduce; then every block decoded.
  bool advance_device() {
    const int P = t_.size();
    if (stage_ == 0) {
      if (p_.count == 0) return false;
      const std::size_t goff = p_.count * static_cast<std::size_t>(t_.rank());
      const float* in = static_cast<const float*>(in_);
      flag_.check(x_, p_.codec, in, res_.empty() ? nullptr : res_.data(), p_.count, P, t_.rank());
      {
        Timed tm(encode_s, "encode");
        x_.encode(codec_, in, DType::Float32, p_.count, goff, p_.seed, step_, msg_.data(), cap_,
                  res_.empty() ? nullptr : res_.data());
      }
      t_.iallgather(msg_.data(), gather_.data(), cap_);
      flag_.post(t_);
      return true;
    }
    if (stage_ == 1) {
      Timed tm(decode_s, "decode");
      for (int r = 0; r < P; ++r)
        x_.decode(codec_, gather_.data() + cap_ * static_cast<std::size_t>(r), cap_,
                  static_cast<float*>(out_) + p_.count * static_cast<std::size_t>(r), DType::Float32,
                  p_.count);
      flag_.settle(x_, P, p_.timeout_s);
    }
    return false;
  }

  AlgoParams p_;
  Codec codec_;
  std::size_t cap_ = 0;
  std::uint64_t own_ = 0;
  exec::Work<std::byte> msg_, gather_;
  AgreedFlag flag_;  // device executors
  std::vector<std::uint64_t> sizes_;
  std::vector<int> counts_, displs_;
  exec::Work<float> res_;
  // The pipeline (chunks_ > 0): chunk c is elements [coff_[c], coff_[c+1]) of a block, its
  // message ccap_[c] bytes at cmoff_[c]; op_: operation -> r * chunks_ + c of a receive, -1.
  int chunks_ = 0;
  std::vector<std::size_t> coff_, ccap_, cmoff_;
  std::vector<int> op_;
  RunError err_;
};

}  // namespace

std::unique_ptr<Algorithm> make_compressed_allgather(Transport& t, const AlgoParams& p) {
  return std::make_unique<CompressedAllgather>(t, p);
}

}  // namespace gradwire::coll
