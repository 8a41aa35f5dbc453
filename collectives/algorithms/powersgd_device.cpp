// PowerSGD with its matrices on the GPU (collectives/algorithms/powersgd_device.hpp). The steps are those
// of the host path (collectives/powersgd.cpp, docs/compressed-collectives.md "powersgd"), each
// one enqueued on the run's stream:
//   begin:  M = G + E (cublasSaxpy), P = M Q (sgemm), dense values beside P, P -> pinned
//   (event) allreduce of P through the transport
//   then:   pinned -> P, QR of P (cuSOLVER), Q = M^T P, E = M - P Q^T, |E|_1 per matrix, Q ->
//           pinned (event) allreduce of Q
//   finish: pinned -> Q, out = P Q^T, the dense values, avg scale
// cuBLAS and cuSOLVER are column-major and the buffers row-major, so a row-major a x b matrix
// is handed over as the column-major b x a matrix it is in memory (its transpose).
#include "collectives/algorithms/powersgd_device.hpp"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>

#include "collectives/algorithms/powersgd_layout.hpp"
#include "gradwire/error.hpp"

namespace gradwire::coll {
namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

[[noreturn]] void failed(const char* what, const std::string& why) {
  throw Error(ErrorCode::Cuda, std::string("gradwire: powersgd (device): ") + what +
                                   " failed: " + why);
}
void check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  cudaGetLastError();
  failed(what, cudaGetErrorString(e));
}
void check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) failed(what, cublasGetStatusString(s));
}
void check(cusolverStatus_t s, const char* what) {
  if (s != CUSOLVER_STATUS_SUCCESS)
    failed(what, "cusolverStatus_t " + std::to_string(static_cast<int>(s)));
}

int as_int(std::size_t n) { return static_cast<int>(n); }  // plans cap count at INT_MAX / 4

struct FreeDevice {
  void operator()(void* p) const noexcept { cudaFree(p); }
};
struct FreePinned {
  void operator()(void* p) const noexcept { cudaFreeHost(p); }
};
template <class T>
using DeviceMem = std::unique_ptr<T, FreeDevice>;
template <class T>
using PinnedMem = std::unique_ptr<T, FreePinned>;

template <class T>
DeviceMem<T> device_alloc(std::size_t n) {
  void* p = nullptr;
  if (n > 0) check(cudaMalloc(&p, n * sizeof(T)), "cudaMalloc");
  return DeviceMem<T>(static_cast<T*>(p));
}
template <class T>
PinnedMem<T> pinned_alloc(std::size_t n) {
  void* p = nullptr;
  if (n > 0) check(cudaHostAlloc(&p, n * sizeof(T), cudaHostAllocPortable), "cudaHostAlloc");
  return PinnedMem<T>(static_cast<T*>(p));
}

// cuBLAS and cuSOLVER handles, made on the current device.
struct Handles {
  cublasHandle_t blas = nullptr;
  cusolverDnHandle_t solver = nullptr;
  Handles() {
    check(cublasCreate(&blas), "cublasCreate");
    // Plain float32 arithmetic: no TF32 or other reduced-precision tensor-core paths, so the
    // result stays within float rounding of the host path's.
    check(cublasSetMathMode(blas, CUBLAS_PEDANTIC_MATH), "cublasSetMathMode");
    check(cusolverDnCreate(&solver), "cusolverDnCreate");
  }
  ~Handles() {
    if (solver) cusolverDnDestroy(solver);
    if (blas) cublasDestroy(blas);
  }
  Handles(const Handles&) = delete;
  Handles& operator=(const Handles&) = delete;
  void bind(cudaStream_t s) const {
    check(cublasSetStream(blas, s), "cublasSetStream");
    check(cusolverDnSetStream(solver, s), "cusolverDnSetStream");
  }
};

// Workspace floats the QR of an n x r column-major matrix needs (geqrf, then orgqr).
int qr_workspace(const Handles& h, float* a, float* tau, std::size_t n, std::size_t r) {
  int lq = 0, lo = 0;
  check(cusolverDnSgeqrf_bufferSize(h.solver, as_int(n), as_int(r), a, as_int(n), &lq),
        "cusolverDnSgeqrf_bufferSize");
  check(cusolverDnSorgqr_bufferSize(h.solver, as_int(n), as_int(r), as_int(r), a, as_int(n), tau,
                                    &lo),
        "cusolverDnSorgqr_bufferSize");
  return std::max(lq, lo);
}

// Orthonormal columns of p (n x r, row-major, device) in place, enqueued on the handles'
// stream: transposed into t (n x r column-major), Householder QR (geqrf + orgqr, as the host's
// LAPACK), transposed back. info[0], info[1]: cuSOLVER's verdicts (0: fine).
void orthonormalize(const Handles& h, float* p, std::size_t n, std::size_t r, float* t,
                    float* tau, float* work, int lwork, int* info) {
  const float one = 1.0f, zero = 0.0f;
  const int N = as_int(n), R = as_int(r);
  // geam with C == B and beta 0 is cuBLAS's documented in-place form (B is not read).
  check(cublasSgeam(h.blas, CUBLAS_OP_T, CUBLAS_OP_N, N, R, &one, p, R, &zero, t, N, t, N),
        "cublasSgeam (P to column-major)");
  check(cusolverDnSgeqrf(h.solver, N, R, t, N, tau, work, lwork, info), "cusolverDnSgeqrf");
  check(cusolverDnSorgqr(h.solver, N, R, R, t, N, tau, work, lwork, info + 1),
        "cusolverDnSorgqr");
  check(cublasSgeam(h.blas, CUBLAS_OP_T, CUBLAS_OP_N, R, N, &one, t, N, &zero, p, R, p, R),
        "cublasSgeam (P back to row-major)");
}

[[noreturn]] void qr_failed(int info) {
  throw Error(ErrorCode::InvalidArgument, "gradwire: powersgd (device): cuSOLVER QR failed (info " +
                                              std::to_string(info) + ")");
}

class PowerSgdDevice final : public Algorithm {
 public:
  PowerSgdDevice(Transport& t, const AlgoParams& p, std::uint32_t rank,
                 const std::vector<MatrixShape>& shapes)
      : t_(t), p_(p), r_(rank), l_(powersgd_layout(p.count, rank, shapes)), done_(8) {
    if (p.dgc)
      throw Error(ErrorCode::Unsupported,
                  "gradwire: powersgd (device): DGC options (momentum, clip_norm, warm-up) "
                  "are not implemented for device-memory powersgd plans");
    const std::size_t nlow = l_.low.size(), pall = l_.pn + l_.dn;
    std::size_t tn = 0;
    for (const PowerSgdMat& m : l_.low) tn = std::max(tn, m.n * r_);
    check(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming), "cudaEventCreate");
    check(cudaEventCreateWithFlags(&finished_, cudaEventDisableTiming), "cudaEventCreate");
    m_ = device_alloc<float>(l_.en);
    p_dev_ = device_alloc<float>(pall);
    q_dev_ = device_alloc<float>(l_.qn);
    t_dev_ = device_alloc<float>(tn);
    tau_ = device_alloc<float>(r_);
    info_dev_ = device_alloc<int>(2 * nlow);
    norm_dev_ = device_alloc<float>(nlow);
    for (const PowerSgdMat& m : l_.low)
      lwork_ = std::max(lwork_, qr_workspace(h_, t_dev_.get(), tau_.get(), m.n, r_));
    work_ = device_alloc<float>(static_cast<std::size_t>(lwork_));
    p_host_ = pinned_alloc<float>(pall);
    q_host_ = pinned_alloc<float>(l_.qn);
    info_host_ = pinned_alloc<int>(2 * nlow);
    norm_host_ = pinned_alloc<float>(nlow);
    // The first Q: the host path's values (powersgd_layout.hpp), so both start alike.
    std::vector<float> q0(l_.qn);
    for (std::size_t i = 0; i < q0.size(); ++i) q0[i] = powersgd_initial_q(p.seed, i);
    if (!q0.empty())
      check(cudaMemcpy(q_dev_.get(), q0.data(), q0.size() * sizeof(float),
                       cudaMemcpyHostToDevice),
            "cudaMemcpy (first Q)");
    if (l_.en > 0) check(cudaMemset(m_.get(), 0, l_.en * sizeof(float)), "cudaMemset (residual)");
    if (p.error_feedback) {
      mirror_.assign(l_.en, 0.0f);
      for (const PowerSgdMat& m : l_.low)
        slots.push_back({mirror_.data() + m.e, m.off, m.n * m.m, true});
    }
    check(cudaEventRecord(finished_, nullptr), "cudaEventRecord");
    check(cudaDeviceSynchronize(), "cudaDeviceSynchronize (setup)");
  }

  ~PowerSgdDevice() override {
    // The last run's tail (out = P Q^T) may still be queued on its stream and reads these
    // buffers. It waits on no peer, only on this GPU's own work, so the wait ends.
    if (finished_) cudaEventSynchronize(finished_);
    if (finished_) cudaEventDestroy(finished_);
    if (ready_) cudaEventDestroy(ready_);
    cudaGetLastError();
  }

  bool on_device() const override { return true; }
  void set_stream(void* s) override { stream_ = static_cast<cudaStream_t>(s); }

  void residual_to_slots() override {
    if (mirror_.empty()) return;
    check(cudaEventSynchronize(finished_), "cudaEventSynchronize");
    check(cudaMemcpy(mirror_.data(), m_.get(), l_.en * sizeof(float), cudaMemcpyDeviceToHost),
          "cudaMemcpy (residual to host)");
  }
  void slots_to_residual() override {
    if (mirror_.empty()) return;
    check(cudaEventSynchronize(finished_), "cudaEventSynchronize");
    check(cudaMemcpy(m_.get(), mirror_.data(), l_.en * sizeof(float), cudaMemcpyHostToDevice),
          "cudaMemcpy (residual to device)");
  }

  std::vector<float> warm_start() const override {
    std::vector<float> q(l_.qn);
    check(cudaEventSynchronize(finished_), "cudaEventSynchronize");
    if (!q.empty())
      check(cudaMemcpy(q.data(), q_dev_.get(), q.size() * sizeof(float), cudaMemcpyDeviceToHost),
            "cudaMemcpy (Q to host)");
    return q;
  }
  void set_warm_start(const std::vector<float>& q) override {
    check(cudaEventSynchronize(finished_), "cudaEventSynchronize");
    if (!q.empty())
      check(cudaMemcpy(q_dev_.get(), q.data(), q.size() * sizeof(float), cudaMemcpyHostToDevice),
            "cudaMemcpy (Q to device)");
  }

  void begin(const void* in, void* out, std::uint64_t) override {
    in_ = static_cast<const float*>(in);
    out_ = static_cast<float*>(out);
    encode_s = decode_s = 0;
    stage_ = Stage::Done;
    if (p_.count == 0) return;
    const double t0 = now_s();
    const cudaStream_t s = stream_;
    // The previous run may have ended on another stream: its tail reads P and Q.
    check(cudaStreamWaitEvent(s, finished_, 0), "cudaStreamWaitEvent");
    h_.bind(s);
    const float one = 1.0f, zero = 0.0f;
    const int R = as_int(r_);
    for (const PowerSgdMat& m : l_.low) {
      float* M = m_.get() + m.e;
      const std::size_t size = m.n * m.m;
      if (p_.error_feedback) {
        check(cublasSaxpy(h_.blas, as_int(size), &one, in_ + m.off, 1, M, 1), "cublasSaxpy");
      } else {
        check(cudaMemcpyAsync(M, in_ + m.off, size * sizeof(float), cudaMemcpyDeviceToDevice, s),
              "cudaMemcpyAsync");
      }
      // P = M Q; column-major: P^T (r x n) = Q^T (r x m) M^T (m x n).
      check(cublasSgemm(h_.blas, CUBLAS_OP_N, CUBLAS_OP_N, R, as_int(m.n), as_int(m.m), &one,
                        q_dev_.get() + m.q, R, M, as_int(m.m), &zero, p_dev_.get() + m.p, R),
            "cublasSgemm (P = M Q)");
    }
    std::size_t at = l_.pn;
    for (const auto& d : l_.dense) {
      check(cudaMemcpyAsync(p_dev_.get() + at, in_ + d.first, d.second * sizeof(float),
                            cudaMemcpyDeviceToDevice, s),
            "cudaMemcpyAsync");
      at += d.second;
    }
    check(cudaMemcpyAsync(p_host_.get(), p_dev_.get(), (l_.pn + l_.dn) * sizeof(float),
                          cudaMemcpyDeviceToHost, s),
          "cudaMemcpyAsync (P to pinned)");
    check(cudaEventRecord(ready_, s), "cudaEventRecord");
    stage_ = Stage::PDown;
    encode_s += now_s() - t0;
  }

  bool progress() override {
    while (stage_ != Stage::Done) {
      if (stage_ == Stage::PDown || stage_ == Stage::QDown) {
        const cudaError_t e = cudaEventQuery(ready_);
        if (e == cudaErrorNotReady) return false;
        check(e, "cudaEventQuery");
        if (stage_ == Stage::PDown) {
          t_.iallreduce(p_host_.get(), l_.pn + l_.dn, Elem::F32, Reduce::Sum);
          stage_ = Stage::PReduce;
        } else {
          for (std::size_t i = 0; i < 2 * l_.low.size(); ++i)
            if (info_host_.get()[i] != 0) qr_failed(info_host_.get()[i]);
          t_.iallreduce(q_host_.get(), l_.qn, Elem::F32, Reduce::Sum);
          stage_ = Stage::QReduce;
        }
        continue;
      }
      const int n = t_.test_some(done_.data());
      if (n == 0) return false;
      if (n > 0) continue;
      t_.reset();
      if (stage_ == Stage::PReduce) {
        // As the host path, whose LAPACKE QR refuses NaN: every rank holds the same sum.
        for (std::size_t i = 0; i < l_.pn; ++i)
          if (!std::isfinite(p_host_.get()[i]))
            throw Error(ErrorCode::InvalidArgument,
                        "gradwire: powersgd (device): the summed P holds a non-finite value "
                        "(element " + std::to_string(i) + "); is the gradient finite?");
        after_p();
      } else {
        finish();
      }
    }
    return true;
  }

 private:
  enum class Stage { PDown, PReduce, QDown, QReduce, Done };

  // The summed P is the same on every rank, so every rank gets the same orthonormal P.
  void after_p() {
    const double t0 = now_s();
    const cudaStream_t s = stream_;
    const float one = 1.0f, zero = 0.0f, minus_one = -1.0f;
    const int R = as_int(r_);
    check(cudaMemcpyAsync(p_dev_.get(), p_host_.get(), (l_.pn + l_.dn) * sizeof(float),
                          cudaMemcpyHostToDevice, s),
          "cudaMemcpyAsync (summed P)");
    for (std::size_t i = 0; i < l_.low.size(); ++i) {
      const PowerSgdMat& m = l_.low[i];
      float* P = p_dev_.get() + m.p;
      float* M = m_.get() + m.e;
      float* Q = q_dev_.get() + m.q;
      orthonormalize(h_, P, m.n, r_, t_dev_.get(), tau_.get(), work_.get(), lwork_,
                     info_dev_.get() + 2 * i);
      // Q = M^T P; column-major: Q^T (r x m) = P^T (r x n) M (n x m).
      check(cublasSgemm(h_.blas, CUBLAS_OP_N, CUBLAS_OP_T, R, as_int(m.m), as_int(m.n), &one, P,
                        R, M, as_int(m.m), &zero, Q, R),
            "cublasSgemm (Q = M^T P)");
      if (!p_.error_feedback) continue;
      // E = M - P Q_own^T; column-major: E^T (m x n) -= Q (m x r) P^T (r x n).
      check(cublasSgemm(h_.blas, CUBLAS_OP_T, CUBLAS_OP_N, as_int(m.m), as_int(m.n), R,
                        &minus_one, Q, R, P, R, &one, M, as_int(m.m)),
            "cublasSgemm (E = M - P Q^T)");
      // |E|_1 lands in device memory (no wait here); non-finite iff E is (or overflows).
      check(cublasSetPointerMode(h_.blas, CUBLAS_POINTER_MODE_DEVICE), "cublasSetPointerMode");
      const cublasStatus_t st =
          cublasSasum(h_.blas, as_int(m.n * m.m), M, 1, norm_dev_.get() + i);
      check(cublasSetPointerMode(h_.blas, CUBLAS_POINTER_MODE_HOST), "cublasSetPointerMode");
      check(st, "cublasSasum");
    }
    const std::size_t nlow = l_.low.size();
    if (nlow > 0) {
      check(cudaMemcpyAsync(q_host_.get(), q_dev_.get(), l_.qn * sizeof(float),
                            cudaMemcpyDeviceToHost, s),
            "cudaMemcpyAsync (Q to pinned)");
      check(cudaMemcpyAsync(info_host_.get(), info_dev_.get(), 2 * nlow * sizeof(int),
                            cudaMemcpyDeviceToHost, s),
            "cudaMemcpyAsync (QR info)");
      if (p_.error_feedback)
        check(cudaMemcpyAsync(norm_host_.get(), norm_dev_.get(), nlow * sizeof(float),
                              cudaMemcpyDeviceToHost, s),
              "cudaMemcpyAsync (residual norms)");
    }
    check(cudaEventRecord(ready_, s), "cudaEventRecord");
    encode_s += now_s() - t0;
    stage_ = Stage::QDown;
    if (nlow == 0) finish();  // nothing factored: P carried every value
  }

  void finish() {
    const double t0 = now_s();
    const cudaStream_t s = stream_;
    const float one = 1.0f, zero = 0.0f;
    const int R = as_int(r_);
    if (l_.qn > 0)
      check(cudaMemcpyAsync(q_dev_.get(), q_host_.get(), l_.qn * sizeof(float),
                            cudaMemcpyHostToDevice, s),
            "cudaMemcpyAsync (summed Q)");
    for (std::size_t i = 0; i < l_.low.size(); ++i) {
      const PowerSgdMat& m = l_.low[i];
      // out = P Q^T; column-major: out^T (m x n) = Q (m x r) P^T (r x n).
      check(cublasSgemm(h_.blas, CUBLAS_OP_T, CUBLAS_OP_N, as_int(m.m), as_int(m.n), R, &one,
                        q_dev_.get() + m.q, R, p_dev_.get() + m.p, R, &zero, out_ + m.off,
                        as_int(m.m)),
            "cublasSgemm (out = P Q^T)");
      // As the host plan does: a non-finite residual is not carried into the next step.
      if (p_.error_feedback && !std::isfinite(norm_host_.get()[i]))
        check(cudaMemsetAsync(m_.get() + m.e, 0, m.n * m.m * sizeof(float), s),
              "cudaMemsetAsync (non-finite residual)");
    }
    std::size_t at = l_.pn;
    for (const auto& d : l_.dense) {
      check(cudaMemcpyAsync(out_ + d.first, p_dev_.get() + at, d.second * sizeof(float),
                            cudaMemcpyDeviceToDevice, s),
            "cudaMemcpyAsync");
      at += d.second;
    }
    const int P = t_.size();
    if (p_.op == ReduceOp::Avg && P > 1) {
      const float inv = 1.0f / static_cast<float>(P);
      check(cublasSscal(h_.blas, as_int(p_.count), &inv, out_, 1), "cublasSscal (avg)");
    }
    // The summed Q stays in q_dev_: the next step's warm start.
    check(cudaEventRecord(finished_, s), "cudaEventRecord");
    decode_s += now_s() - t0;
    stage_ = Stage::Done;
  }

  Transport& t_;
  AlgoParams p_;
  std::size_t r_;
  PowerSgdLayout l_;
  Handles h_;
  std::vector<int> done_;
  cudaEvent_t ready_ = nullptr;     // the last copy to pinned memory is done
  cudaEvent_t finished_ = nullptr;  // the last run's tail is done
  cudaStream_t stream_ = nullptr;
  DeviceMem<float> m_, p_dev_, q_dev_, t_dev_, tau_, work_, norm_dev_;
  DeviceMem<int> info_dev_;
  PinnedMem<float> p_host_, q_host_, norm_host_;
  PinnedMem<int> info_host_;
  int lwork_ = 0;
  std::vector<float> mirror_;  // host copy of the residual, for the plan's residual calls
  const float* in_ = nullptr;
  float* out_ = nullptr;
  Stage stage_ = Stage::Done;
};

}  // namespace

std::unique_ptr<Algorithm> make_powersgd_device(Transport& t, const AlgoParams& p,
                                                std::uint32_t rank,
                                                const std::vector<MatrixShape>& shapes) {
  return std::make_unique<PowerSgdDevice>(t, p, rank, shapes);
}

void orthonormalize_columns_device(float* a, std::size_t rows, std::size_t r) {
  if (rows == 0 || r == 0) return;
  if (r > rows)
    throw Error(ErrorCode::InvalidArgument, "gradwire: powersgd (device): QR of " +
                                                std::to_string(rows) + " x " + std::to_string(r) +
                                                " needs rows >= r");
  Handles h;
  h.bind(nullptr);
  DeviceMem<float> p = device_alloc<float>(rows * r), t = device_alloc<float>(rows * r),
                   tau = device_alloc<float>(r);
  DeviceMem<int> info = device_alloc<int>(2);
  const int lwork = qr_workspace(h, t.get(), tau.get(), rows, r);
  DeviceMem<float> work = device_alloc<float>(static_cast<std::size_t>(lwork));
  check(cudaMemcpy(p.get(), a, rows * r * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy");
  orthonormalize(h, p.get(), rows, r, t.get(), tau.get(), work.get(), lwork, info.get());
  int info_host[2] = {0, 0};
  check(cudaMemcpy(info_host, info.get(), sizeof info_host, cudaMemcpyDeviceToHost),
        "cudaMemcpy");
  check(cudaMemcpy(a, p.get(), rows * r * sizeof(float), cudaMemcpyDeviceToHost), "cudaMemcpy");
  for (int i : info_host)
    if (i != 0) qr_failed(i);
}

}  // namespace gradwire::coll
