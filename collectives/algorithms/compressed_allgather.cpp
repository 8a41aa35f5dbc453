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

}  // namespace

std::unique_ptr<Algorithm> make_compressed_allgather(Transport& t, const AlgoParams& p) {
  return std::make_unique<CompressedAllgather>(t, p);
}

}  // namespace gradwire::coll
