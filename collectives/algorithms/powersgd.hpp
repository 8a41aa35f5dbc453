// PowerSGD (Vogels, Karimireddy and Jaggi, NeurIPS 2019) as a plan algorithm: each matrix M
// (rows x cols) of the buffer travels as two allreduced factors, P = M Q (rows x r) and, after
// P is orthonormalised, Q = M^T P (cols x r); the result is P Q^T. One power iteration per
// step, warm-started from the previous step's Q; error feedback keeps M - P Q_own^T.
// docs/compressed-collectives.md, "powersgd".
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "collectives/algorithms.hpp"
#include "gradwire/plan.hpp"

namespace gradwire::coll {

// Throws Error(InvalidArgument) for shapes that do not fit in p.count or a rank of 0, and
// Error(Unsupported) when gradwire was built without LAPACKE.
std::unique_ptr<Algorithm> make_powersgd(Transport& t, const AlgoParams& p, std::uint32_t rank,
                                         const std::vector<MatrixShape>& shapes);

// Orthonormalises the columns of a (rows x r, row-major) in place, by a Householder QR
// (LAPACKE_sgeqrf + LAPACKE_sorgqr). Exposed for tests.
void orthonormalize_columns(float* a, std::size_t rows, std::size_t r);

}  // namespace gradwire::coll
