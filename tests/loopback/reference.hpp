// Serial references of the deterministic algorithms, computed with the host codec alone: the
// loopback tier (test_loopback_algorithms.cpp) and the mpirun tier (tests/mpi/
// test_plan_reference.cpp) both compare a plan's bits with these, so the two tiers give the
// same bits as each other.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include <gradwire/codec.hpp>

#include "collectives/staged.hpp"  // chunk_offsets: SRA's documented chunking

namespace gwref {

// Compressed allgather, block r: decode(encode(x_r)) at global offset r * n.
inline std::vector<float> allgather_block(const gradwire::Codec& c, const std::vector<float>& x,
                                          int r, std::uint64_t seed, std::uint64_t step) {
  const std::size_t n = x.size();
  std::vector<std::byte> msg(c.max_encoded_bytes(n));
  const std::size_t bytes = c.encode(x.data(), gradwire::DType::Float32, n, n * static_cast<std::size_t>(r),
                                     seed, step, msg.data(), msg.size(), nullptr);
  std::vector<float> out(n);
  c.decode(msg.data(), bytes, out.data(), gradwire::DType::Float32, n);
  return out;
}

// Reduce-scatter, owner `me` of block size n: its own block exact, then every other rank j's
// block `me` encoded by j (offset me * n) and added in the order me+1, me+2, ... mod P; avg
// divides by P (float division, as the algorithm).
inline std::vector<float> reduce_scatter_block(const gradwire::Codec& c,
                                               const std::vector<std::vector<float>>& x, int me,
                                               std::size_t n, std::uint64_t seed,
                                               std::uint64_t step, bool avg) {
  const int P = static_cast<int>(x.size());
  const std::size_t at = n * static_cast<std::size_t>(me);
  std::vector<float> acc(x[static_cast<std::size_t>(me)].begin() + static_cast<long>(at),
                         x[static_cast<std::size_t>(me)].begin() + static_cast<long>(at + n));
  const bool raw = c.spec().kind == gradwire::CodecKind::None;
  std::vector<std::byte> msg(raw ? 0 : c.max_encoded_bytes(n));
  for (int k = 1; k < P; ++k) {
    const std::vector<float>& xj = x[static_cast<std::size_t>((me + k) % P)];
    if (raw) {
      for (std::size_t i = 0; i < n; ++i) acc[i] += xj[at + i];
      continue;
    }
    c.encode(xj.data() + at, gradwire::DType::Float32, n, at, seed, step, msg.data(), msg.size(),
             nullptr);
    c.decode_add(msg.data(), msg.size(), acc.data(), n);
  }
  if (avg)
    for (float& v : acc) v /= static_cast<float>(P);
  return acc;
}

// Sparse allgather without the dense switch: every rank's message decoded and added in rank
// order (offset 0).
inline std::vector<float> sparse_sum(const gradwire::Codec& c,
                                     const std::vector<std::vector<float>>& x, std::uint64_t seed,
                                     std::uint64_t step) {
  const std::size_t n = x.empty() ? 0 : x[0].size();
  std::vector<float> out(n, 0.0f);
  std::vector<std::byte> msg(c.max_encoded_bytes(n));
  for (const std::vector<float>& v : x) {
    const std::size_t bytes = c.encode(v.data(), gradwire::DType::Float32, n, 0, seed, step,
                                       msg.data(), msg.size(), nullptr);
    c.decode_add(msg.data(), bytes, out.data(), n);
  }
  return out;
}

// SRA without error feedback: chunk o (bucket-aligned, collectives/staged.hpp) is the sum of
// every rank's decoded chunk, the owner's first, then o+1, o+2, ... mod P; avg divides by P;
// the owner re-encodes it with the second seed and every rank decodes that message.
inline std::vector<float> sra_allreduce(const gradwire::Codec& c,
                                        const std::vector<std::vector<float>>& x,
                                        std::uint64_t seed, std::uint64_t step, bool avg) {
  const int P = static_cast<int>(x.size());
  const std::size_t n = x.empty() ? 0 : x[0].size();
  const std::size_t unit = c.bucket_size() ? c.bucket_size() : 1;
  const std::vector<std::size_t> off = gradwire::coll::chunk_offsets(n, unit, P);
  std::vector<float> out(n, 0.0f);
  for (int o = 0; o < P; ++o) {
    const std::size_t at = off[static_cast<std::size_t>(o)];
    const std::size_t len = off[static_cast<std::size_t>(o) + 1] - at;
    if (!len) continue;
    std::vector<std::byte> msg(c.max_encoded_bytes(len));
    std::vector<float> acc(len, 0.0f);
    for (int k = 0; k < P; ++k) {
      const std::vector<float>& xj = x[static_cast<std::size_t>((o + k) % P)];
      c.encode(xj.data() + at, gradwire::DType::Float32, len, at, seed, step, msg.data(),
               msg.size(), nullptr);
      c.decode_add(msg.data(), msg.size(), acc.data(), len);
    }
    if (avg)
      for (float& v : acc) v /= static_cast<float>(P);
    c.encode(acc.data(), gradwire::DType::Float32, len, at, seed ^ 0x9e3779b97f4a7c15ull, step,
             msg.data(), msg.size(), nullptr);
    c.decode(msg.data(), msg.size(), out.data() + at, gradwire::DType::Float32, len);
  }
  return out;
}

}  // namespace gwref
