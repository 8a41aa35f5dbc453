#include "collectives/cost_model.hpp"

#include <algorithm>

namespace gradwire::coll {
namespace {

double dense_time(const CostInputs& in, double elements) {
  return in.dense_a + in.dense_b * elements;
}

}  // namespace

double predict_allreduce(const CostInputs& in, const std::string& algorithm, const Codec& codec,
                         std::size_t n, int P) {
  const double N = static_cast<double>(n), p = P;
  if (algorithm == "dense") return dense_time(in, N);
  if (n == 0) return 0;
  if (algorithm == "sra") {
    // Chunks of whole buckets, one per rank; every rank encodes all of x once and its reduced
    // chunk again, decodes P chunks in each half; two exchanges of P-1 messages, decode not
    // assumed to overlap the transfer (a compressed run is never predicted too fast).
    const std::size_t unit = codec.bucket_size() ? codec.bucket_size() : 1;
    const std::size_t units = (n + unit - 1) / unit;
    const std::size_t chunk = std::min(n, unit * ((units + P - 1) / P));
    const double m = static_cast<double>(codec.max_encoded_bytes(chunk));
    const double compute = in.enc * (N + static_cast<double>(chunk)) + in.dec * 2 * N;
    const double transfer = P > 1 ? 2 * (in.alpha + (p - 1) * m * in.beta) : 0;
    return compute + transfer;
  }
  if (algorithm == "sparse-allgather") {
    // The message bound (threshold: every element) stands for the message: an upper bound.
    const double m = static_cast<double>(codec.max_encoded_bytes(n));
    if (codec.spec().kind == CodecKind::RandK) {
      // The chosen values summed by the engine's allreduce.
      return in.enc * N + dense_time(in, m / 4) + in.dec * N;
    }
    if (P > 1 && p * m > 8 * N) return in.enc * N + in.dec * N + dense_time(in, N);  // switch
    const double transfer = P > 1 ? 2 * in.alpha + (p - 1) * m * in.beta : 0;
    return in.enc * N + transfer + in.dec * p * N;
  }
  return -1;
}

CostDecision decide_allreduce(const CostInputs& in, const std::string& compressed,
                              const Codec& codec, std::size_t n, int P, double margin) {
  CostDecision d;
  d.dense_s = predict_allreduce(in, "dense", codec, n, P);
  d.compressed_s = predict_allreduce(in, compressed, codec, n, P);
  if (d.compressed_s < 0) {  // not modeled: keep the rule's choice
    d.compressed_s = 0;
    d.algorithm = compressed;
    d.predicted_s = 0;
    return d;
  }
  const bool pays = d.compressed_s < (1 - margin) * d.dense_s;
  d.algorithm = pays ? compressed : "dense";
  d.predicted_s = pays ? d.compressed_s : d.dense_s;
  return d;
}

CostDecision decide_from_trial(double dense_s, double compressed_s, std::size_t n_trial,
                               const std::string& compressed, std::size_t n, double margin) {
  const double scale =
      n_trial > 0 ? static_cast<double>(n) / static_cast<double>(n_trial) : 1.0;
  CostDecision d;
  d.dense_s = dense_s * scale;
  d.compressed_s = compressed_s * scale;
  const bool pays = n > 0 && d.compressed_s < (1 - margin) * d.dense_s;
  d.algorithm = pays ? compressed : "dense";
  d.predicted_s = pays ? d.compressed_s : d.dense_s;
  return d;
}

}  // namespace gradwire::coll
