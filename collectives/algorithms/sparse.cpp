// Sparse allreduce: allgatherv of encoded (index, value) messages with a dense switch;
// random-k by one dense allreduce of the chosen values (docs/compressed-collectives.md).
// Pipelined (host paths, GRADWIRE_OVERLAP, collectives/overlap.hpp): the messages go point to
// point and each is decoded the moment it and the lower ranks' have landed.
#include "collectives/algorithms.hpp"
#include "collectives/staged.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

#include "collectives/dgc.hpp"
#include "collectives/overlap.hpp"
#include "gradwire/error.hpp"

namespace gradwire::coll {
namespace {

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
      // The whole message is one chunk: top-k chooses over the whole buffer, so encoding it in
      // pieces would choose other elements (not the plain order's bits).
      if (overlap_chunk(t, p) > 0) {
        pipelined_ = true;
        peer_.assign(2 * static_cast<std::size_t>(P), -1);
        ready_.assign(static_cast<std::size_t>(P), 0);
        if (done_.size() < peer_.size()) done_.resize(peer_.size());
      }
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
        Timed tm(encode_s, "encode");
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
        Timed tm(decode_s, "decode");
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
        Timed tm(decode_s, "decode");
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
      if (pipelined_) return exchange_pipelined();
      t_.iallgatherv(msg_.data(), bytes_, gather_.data(), counts_.data(), displs_.data());
      return true;
    }
    if (stage_ == 2) {
      Timed tm(decode_s, "decode");
      if (!dense_) {
        if (!pipelined_) {
          std::fill(out, out + p_.count, 0.0f);
          // Rank order, not arrival order: every rank adds the same terms in the same order.
          for (int r = 0; r < P; ++r)
            cur_.decode_add(gather_.data() + displs_[r], sizes_[r], out, p_.count);
        }
      }
      if (p_.op == ReduceOp::Avg) scale(out, p_.count, P);
    }
    return false;
  }

 private:
  // Stage 1, pipelined: every peer's message received into its slot and the own sent to every
  // peer; the sum starts at once and each message is added as soon as it and all lower ranks'
  // have landed: rank order, as the allgatherv path, so the same bits on every rank and run.
  bool exchange_pipelined() {
    const int P = t_.size(), me = t_.rank();
    std::fill(ready_.begin(), ready_.end(), 0);
    next_ = 0;
    ready_[static_cast<std::size_t>(me)] = 1;
    for (int r = 0; r < P; ++r)
      if (r != me) peer_[static_cast<std::size_t>(t_.irecv(gather_.data() + displs_[r], sizes_[r], r, kTagGather))] = r;
    for (int k = 1; k < P; ++k) t_.isend(msg_.data(), bytes_, (me + k) % P, kTagGather);
    std::fill(static_cast<float*>(out_), static_cast<float*>(out_) + p_.count, 0.0f);
    fold();
    return true;
  }

  void arrived(int op) override {
    if (!pipelined_ || stage_ != 1 || dense_) return;
    const int r = peer_[static_cast<std::size_t>(op)];
    if (r < 0) return;  // a send
    ready_[static_cast<std::size_t>(r)] = 1;
    fold();
  }

  void fold() {
    Timed tm(decode_s, "decode");
    const int P = t_.size();
    while (next_ < P && ready_[static_cast<std::size_t>(next_)]) {
      const std::byte* m = next_ == t_.rank() ? msg_.data() : gather_.data() + displs_[next_];
      cur_.decode_add(m, sizes_[next_], static_cast<float*>(out_), p_.count);
      ++next_;
    }
  }

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
  bool pipelined_ = false;
  std::vector<int> peer_;    // operation -> peer of a receive, -1 for a send
  std::vector<char> ready_;  // messages landed; next_: the next rank to add
  int next_ = 0;
};

}  // namespace

std::unique_ptr<Algorithm> make_sparse(Transport& t, const AlgoParams& p) {
  return std::make_unique<Sparse>(t, p);
}

}  // namespace gradwire::coll
