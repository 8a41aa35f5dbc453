// PowerSGD on the GPU (issue 14): the algorithm of collectives/algorithms/powersgd.hpp with the matrices,
// the residual and the factors in device memory. The products are cuBLAS sgemm calls, the
// orthonormalisation a cuSOLVER Householder QR (geqrf + orgqr); only P and Q (a few KB) cross
// to pinned host memory for the two allreduces through the plan's transport. CUDA builds only
// (GRADWIRE_HAVE_CUDA); docs/compressed-collectives.md, "PowerSGD on the device".
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "collectives/algorithms.hpp"
#include "gradwire/plan.hpp"

namespace gradwire::coll {

// Device-memory powersgd: begin() takes device pointers and enqueues on the stream given by
// set_stream(); progress() polls CUDA events (never blocks) and returns true once the result
// is enqueued on that stream. Same shapes rules and errors as make_powersgd; Error(Cuda) when
// a CUDA, cuBLAS or cuSOLVER call fails; Error(Unsupported) with DGC options.
std::unique_ptr<Algorithm> make_powersgd_device(Transport& t, const AlgoParams& p,
                                                std::uint32_t rank,
                                                const std::vector<MatrixShape>& shapes);

// Orthonormalises the columns of a (rows x r, row-major, host memory) in place on the current
// GPU, by the device path's QR. Exposed for tests (against orthonormalize_columns).
void orthonormalize_columns_device(float* a, std::size_t rows, std::size_t r);

}  // namespace gradwire::coll
