// Compressed allgather: each block encoded once, sizes then messages gathered, every block
// decoded by every rank (its own too, so all end with the same bits).
#include "collectives/algorithms.hpp"
#include "collectives/staged.hpp"

#include <vector>

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
    msg_ = exec::Work<std::byte>(x_, cap_);
    gather_ = exec::Work<std::byte>(x_, cap_ * static_cast<std::size_t>(P));
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
    if (stage_ == 0) {
      if (p_.count == 0) return false;
      const std::size_t goff = p_.count * static_cast<std::size_t>(t_.rank());
      {
        Timed tm(encode_s);
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
      Timed tm(decode_s);
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
        Timed tm(encode_s);
        x_.encode(codec_, in, DType::Float32, p_.count, goff, p_.seed, step_, msg_.data(), cap_,
                  res_.empty() ? nullptr : res_.data());
      }
      t_.iallgather(msg_.data(), gather_.data(), cap_);
      flag_.post(t_);
      return true;
    }
    if (stage_ == 1) {
      Timed tm(decode_s);
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
};

}  // namespace

std::unique_ptr<Algorithm> make_compressed_allgather(Transport& t, const AlgoParams& p) {
  return std::make_unique<CompressedAllgather>(t, p);
}

}  // namespace gradwire::coll
