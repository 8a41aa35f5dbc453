// The residual file of a plan (docs/compressed-collectives.md, "Error feedback"), version 2:
// "GWRESID1", u32 version 2, u32 collective, u64 elements, then per global element the float64
// sum of every rank's residual for it, then the u32 CRC-32 (zlib) of everything before it;
// host byte order. Only the file: gathering the sum and sharing it out is the plan's.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "gradwire/plan.hpp"

namespace gradwire::coll {

// Writes `sum` as the residual of a plan of collective `c`; false when the file cannot be
// written.
bool write_residual_file(const std::string& path, PlanCollective c, const std::vector<double>& sum);

// Reads and checks a file for a plan of collective `want` with n global elements into sum
// (n entries). Returns "" on success, else why not: not a residual file, another version,
// another collective or size, truncated, trailing bytes, a failed checksum, a non-finite or
// out-of-float-range value.
std::string read_residual_file(const std::string& path, PlanCollective want, std::size_t n,
                               std::vector<double>& sum);

}  // namespace gradwire::coll
