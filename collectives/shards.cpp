#include "collectives/shards.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>

#include "collectives/cost_probe.hpp"
#include "collectives/staged.hpp"
#include "gradwire/error.hpp"

namespace gradwire::coll {

void check_shard_weights(const std::vector<double>& w, int P) {
  if (static_cast<int>(w.size()) != P) {
    throw Error(ErrorCode::InvalidArgument,
                "gradwire: shard weights: " + std::to_string(w.size()) + " given for " +
                    std::to_string(P) + " ranks");
  }
  for (int r = 0; r < P; ++r) {
    const double x = w[static_cast<std::size_t>(r)];
    if (!std::isfinite(x) || !(x > 0)) {
      throw Error(ErrorCode::InvalidArgument, "gradwire: shard weight of rank " +
                                                  std::to_string(r) + " is " + std::to_string(x) +
                                                  "; weights must be finite and > 0");
    }
  }
}

std::vector<std::size_t> shard_offsets(std::size_t n, std::size_t unit, int P,
                                       const std::vector<double>& w) {
  if (w.empty()) return chunk_offsets(n, unit, P);
  check_shard_weights(w, P);
  const std::size_t units = (n + unit - 1) / unit;
  double total = 0;
  for (double x : w) total += x;
  std::vector<std::size_t> off(static_cast<std::size_t>(P) + 1, 0);
  double prefix = 0;
  for (int r = 1; r <= P; ++r) {
    prefix += w[static_cast<std::size_t>(r - 1)];
    // The last boundary is exact (no rounding leaves a tail unowned); the others are rounded
    // to the nearest unit from the same doubles on every rank, so every rank cuts alike.
    const std::size_t u =
        r == P ? units
               : std::min(units, static_cast<std::size_t>(std::llround(
                                     static_cast<double>(units) * (prefix / total))));
    off[static_cast<std::size_t>(r)] =
        std::max(off[static_cast<std::size_t>(r - 1)], std::min(n, unit * u));
  }
  return off;
}

bool balance_shards_setting(bool field) {
  const char* v = std::getenv("GRADWIRE_BALANCE_SHARDS");
  if (!v || !*v) return field;
  const std::string s(v);
  if (s == "1") return true;
  if (s == "0") return false;
  throw Error(ErrorCode::InvalidArgument,
              "gradwire: GRADWIRE_BALANCE_SHARDS='" + s + "' is not one of: 0, 1");
}

RankCosts gather_rank_costs(MPI_Comm comm, const Codec& codec,
                            const std::function<void(int, const char*)>& check) {
  int P = 1;
  MPI_Comm_size(comm, &P);
  const CostInputs mine = probe_codec_local(codec);
  const double v[2] = {mine.enc, mine.dec};
  std::vector<double> all(2 * static_cast<std::size_t>(P));
  check(MPI_Allgather(v, 2, MPI_DOUBLE, all.data(), 2, MPI_DOUBLE, comm), "MPI_Allgather");
  RankCosts rc;
  for (int r = 0; r < P; ++r) {
    rc.enc.push_back(all[2 * static_cast<std::size_t>(r)]);
    rc.dec.push_back(all[2 * static_cast<std::size_t>(r) + 1]);
  }
  return rc;
}

std::vector<double> shard_weights(const RankCosts& rc, double spread) {
  const std::size_t P = rc.enc.size();
  if (P < 2 || rc.dec.size() != P) return {};
  std::vector<double> cost(P);
  for (std::size_t r = 0; r < P; ++r)
    cost[r] = static_cast<double>(P) * rc.dec[r] + rc.enc[r];
  const double lo = *std::min_element(cost.begin(), cost.end());
  const double hi = *std::max_element(cost.begin(), cost.end());
  if (!(lo > 0) || !std::isfinite(hi) || hi <= lo * (1 + spread)) return {};
  std::vector<double> w(P);
  for (std::size_t r = 0; r < P; ++r)
    w[r] = std::max(1.0, std::round(16 * lo / cost[r]));  // sixteenths, the fastest at 16
  return w;
}

double predict_sra_shards(const CostInputs& in, const RankCosts& rc, const Codec& codec,
                          const std::vector<std::size_t>& off) {
  const std::size_t P = off.size() - 1;
  const double N = static_cast<double>(off[P]);
  double enc_all = 0, reduce = 0, dec_all = 0, bytes = 0;
  for (std::size_t r = 0; r < P; ++r) {
    const std::size_t len = off[r + 1] - off[r];
    enc_all = std::max(enc_all, rc.enc[r] * N);
    reduce = std::max(reduce, static_cast<double>(len) *
                                  (static_cast<double>(P) * rc.dec[r] + rc.enc[r]));
    dec_all = std::max(dec_all, rc.dec[r] * N);
    bytes += len ? static_cast<double>(codec.max_encoded_bytes(len)) : 0;
  }
  // beta is per byte each rank sends while all send (cost_probe): on a shared link (one host,
  // the emulated link) an exchange costs the mean message, whatever the layout.
  const double m = bytes / static_cast<double>(P);
  const double transfer =
      P > 1 ? 2 * (in.alpha + static_cast<double>(P - 1) * m * in.beta) : 0;
  return enc_all + reduce + dec_all + transfer;
}

}  // namespace gradwire::coll
