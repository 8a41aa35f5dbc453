#include "collectives/algorithms/powersgd.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>

#include "collectives/algorithms/powersgd_layout.hpp"
#include "gradwire/error.hpp"
#include "timeline.hpp"
#include "transport/element_ops.hpp"

#if GRADWIRE_HAVE_HOST_LINALG
#include <cblas.h>
#include <lapacke.h>
#endif

namespace gradwire::coll {
namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The three products of a step, all row-major through BLAS (a hand loop over the runtime rank
// ran at under 1 GFLOP/s: the plan's encode then cost more than the wire it saved).
#if GRADWIRE_HAVE_HOST_LINALG
// p (n x r) = m (n x cols) * q (cols x r)
void mul_mq(const float* m, const float* q, float* p, std::size_t n, std::size_t cols,
            std::size_t r) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(n),
              static_cast<int>(r), static_cast<int>(cols), 1.0f, m, static_cast<int>(cols), q,
              static_cast<int>(r), 0.0f, p, static_cast<int>(r));
}

// q (cols x r) = m^T (m: n x cols) * p (n x r)
void mul_mtp(const float* m, const float* p, float* q, std::size_t n, std::size_t cols,
             std::size_t r) {
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, static_cast<int>(cols),
              static_cast<int>(r), static_cast<int>(n), 1.0f, m, static_cast<int>(cols), p,
              static_cast<int>(r), 0.0f, q, static_cast<int>(r));
}

// out (n x cols) = scale * p (n x r) q^T (q: cols x r) + keep * out
void mul_pqt(const float* p, const float* q, float* out, std::size_t n, std::size_t cols,
             std::size_t r, float scale, float keep) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n),
              static_cast<int>(cols), static_cast<int>(r), scale, p, static_cast<int>(r), q,
              static_cast<int>(r), keep, out, static_cast<int>(cols));
}
#else  // never called: without them the plan's constructor refuses first
void mul_mq(const float*, const float*, float*, std::size_t, std::size_t, std::size_t) {}
void mul_mtp(const float*, const float*, float*, std::size_t, std::size_t, std::size_t) {}
void mul_pqt(const float*, const float*, float*, std::size_t, std::size_t, std::size_t, float,
             float) {}
#endif

class PowerSgd final : public Algorithm {
 public:
  PowerSgd(Transport& t, const AlgoParams& p, std::uint32_t rank,
           const std::vector<MatrixShape>& shapes)
      : t_(t), p_(p), r_(rank), done_(8) {
    PowerSgdLayout l = powersgd_layout(p.count, rank, shapes);
    low_ = std::move(l.low);
    dense_ = std::move(l.dense);
    const std::size_t pn = l.pn, qn = l.qn, en = l.en, dn = l.dn;
    dense_at_ = pn;
    pbuf_.resize(pn + dn);
    qbuf_.resize(qn);
    qlocal_.resize(qn);
    if (!low_.empty()) {
#if !GRADWIRE_HAVE_HOST_LINALG
      throw Error(ErrorCode::Unsupported,
                  "gradwire: powersgd: this gradwire was built without LAPACKE and CBLAS "
                  "(Debian's liblapacke-dev and libopenblas-dev; scripts/setup.sh installs "
                  "them)");
#endif
    }
    // The first Q: the same pseudo-random values on every rank, from the plan's seed.
    for (std::size_t i = 0; i < qn; ++i) qbuf_[i] = powersgd_initial_q(p.seed, i);
    if (p.error_feedback) {
      res_.assign(en, 0.0f);
      for (const Mat& m : low_) slots.push_back({res_.data() + m.e, m.off, m.n * m.m, true});
    } else {
      work_.resize(en);
    }
  }

  void begin(const void* in, void* out, std::uint64_t) override {
    in_ = static_cast<const float*>(in);
    out_ = static_cast<float*>(out);
    encode_s = decode_s = 0;
    stage_ = 0;
    advance();
  }

  std::vector<float> warm_start() const override { return qbuf_; }
  void set_warm_start(const std::vector<float>& q) override { qbuf_ = q; }

  bool progress() override {
    while (stage_ < 3) {
      const int n = t_.test_some(done_.data());
      if (n == 0) return false;
      if (n > 0) continue;
      t_.reset();
      ++stage_;
      advance();
    }
    return true;
  }

 private:
  using Mat = PowerSgdMat;  // offsets in pbuf_/qbuf_ and in the residual (or work) buffer

  float* mbuf(const Mat& m) { return (res_.empty() ? work_.data() : res_.data()) + m.e; }

  void advance() {
    const int P = t_.size();
    if (stage_ == 0) {
      if (p_.count == 0) {
        stage_ = 3;
        return;
      }
      const double t0 = now_s();
      // M = G + E (error feedback: the residual buffer becomes M), then P = M Q.
      for (const Mat& m : low_) {
        float* M = mbuf(m);
        const float* g = in_ + m.off;
        const std::size_t size = m.n * m.m;
        if (res_.empty()) {
          std::memcpy(M, g, size * sizeof(float));
        } else {
          for (std::size_t i = 0; i < size; ++i) M[i] += g[i];
        }
        mul_mq(M, qbuf_.data() + m.q, pbuf_.data() + m.p, m.n, m.m, r_);
      }
      std::size_t at = dense_at_;
      for (const auto& d : dense_) {
        std::memcpy(pbuf_.data() + at, in_ + d.first, d.second * sizeof(float));
        at += d.second;
      }
      const double t1 = now_s();
      encode_s += t1 - t0;
      timeline::span_between("encode (P = M Q)", t0, t1);  // the allreduce of P: an async event
      t_.iallreduce(pbuf_.data(), pbuf_.size(), Elem::F32, Reduce::Sum);
      return;
    }
    if (stage_ == 1) {
      const double t0 = now_s();
      // Every rank holds the same summed P, so every rank orthonormalises to the same bits.
      for (const Mat& m : low_) {
        float* Pm = pbuf_.data() + m.p;
        orthonormalize_columns(Pm, m.n, r_);
        float* M = mbuf(m);
        float* Q = qlocal_.data() + m.q;
        mul_mtp(M, Pm, Q, m.n, m.m, r_);
        // This rank's share of the result is P Q_own^T; the rest stays for the next step.
        if (!res_.empty()) mul_pqt(Pm, Q, M, m.n, m.m, r_, -1.0f, 1.0f);
      }
      std::copy(qlocal_.begin(), qlocal_.end(), qbuf_.begin());
      const double t1 = now_s();
      encode_s += t1 - t0;
      timeline::span_between("encode (orthonormalize P, Q = M^T P)", t0, t1);
      if (qbuf_.empty()) {
        stage_ = 2;
        finish(P);
        return;
      }
      t_.iallreduce(qbuf_.data(), qbuf_.size(), Elem::F32, Reduce::Sum);
      return;
    }
    if (stage_ == 2) finish(P);
  }

  void finish(int P) {
    const double t0 = now_s();
    for (const Mat& m : low_)
      mul_pqt(pbuf_.data() + m.p, qbuf_.data() + m.q, out_ + m.off, m.n, m.m, r_, 1.0f, 0.0f);
    std::size_t at = dense_at_;
    for (const auto& d : dense_) {
      std::memcpy(out_ + d.first, pbuf_.data() + at, d.second * sizeof(float));
      at += d.second;
    }
    if (p_.op == ReduceOp::Avg && P > 1) detail::divide_in_place(out_, p_.count, DType::Float32, P);
    // qbuf_ (the summed Q) is the next step's starting point: the warm start.
    const double t1 = now_s();
    decode_s += t1 - t0;
    timeline::span_between("decode (P Q^T)", t0, t1);
    stage_ = 3;
  }

  Transport& t_;
  AlgoParams p_;
  std::size_t r_;
  std::vector<Mat> low_;
  std::vector<std::pair<std::size_t, std::size_t>> dense_;  // (offset, length)
  std::size_t dense_at_ = 0;                                // dense values' place in pbuf_
  std::vector<float> pbuf_, qbuf_, qlocal_, res_, work_;
  std::vector<int> done_;
  const float* in_ = nullptr;
  float* out_ = nullptr;
  int stage_ = 3;
};

}  // namespace

void orthonormalize_columns(float* a, std::size_t rows, std::size_t r) {
#if GRADWIRE_HAVE_HOST_LINALG
  if (rows == 0 || r == 0) return;
  std::vector<float> tau(r);
  const auto n = static_cast<lapack_int>(rows), k = static_cast<lapack_int>(r);
  lapack_int info = LAPACKE_sgeqrf(LAPACK_ROW_MAJOR, n, k, a, k, tau.data());
  if (info == 0) info = LAPACKE_sorgqr(LAPACK_ROW_MAJOR, n, k, k, a, k, tau.data());
  if (info != 0)
    throw Error(ErrorCode::InvalidArgument,
                "gradwire: powersgd: LAPACK QR failed (info " + std::to_string(info) +
                    "); is the gradient finite?");
#else
  (void)a, (void)rows, (void)r;
  throw Error(ErrorCode::Unsupported, "gradwire: powersgd: built without LAPACKE and CBLAS");
#endif
}

std::unique_ptr<Algorithm> make_powersgd(Transport& t, const AlgoParams& p, std::uint32_t rank,
                                         const std::vector<MatrixShape>& shapes) {
  return std::make_unique<PowerSgd>(t, p, rank, shapes);
}

}  // namespace gradwire::coll
