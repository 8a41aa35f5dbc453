// The cost model behind algorithm "auto" (docs/compressed-collectives.md, "Cost model"):
// predicted time of a dense or compressed allreduce from measured link and codec figures.
// Pure functions of their inputs, so every rank given the same (agreed) figures decides the
// same, and tests can feed synthetic figures.
#pragma once

#include <cstddef>
#include <string>

#include "gradwire/codec.hpp"

namespace gradwire::coll {

// What the probe measures (collectives/cost_probe.hpp), agreed across ranks by taking each
// figure's maximum: the slowest rank and the slowest link bound a collective.
struct CostInputs {
  double alpha = 0;    // s: one message's latency (a point-to-point exchange of 8 bytes)
  double beta = 0;     // s per byte each rank sends while every rank sends (exchange bandwidth)
  double dense_a = 0;  // s: the engine's float32 allreduce of a few elements
  double dense_b = 0;  // s per element of that allreduce beyond its latency
  double enc = 0;      // s per element: this codec's encode (x + residual in one pass)
  double dec = 0;      // s per element: this codec's decode_add
};

// The model's figures for one plan: both candidates and the choice.
struct CostDecision {
  std::string algorithm;    // "dense" or the compressed algorithm
  double dense_s = 0;       // predicted time of the engine's allreduce
  double compressed_s = 0;  // predicted time of `compressed` (0 when not modeled)
  double predicted_s = 0;   // of the chosen one
};

// Predicted seconds of `algorithm` ("dense", "sra", "sparse-allgather") for an allreduce of n
// float32 elements over P ranks with `codec`. Other algorithms: a negative value (not modeled).
double predict_allreduce(const CostInputs& in, const std::string& algorithm, const Codec& codec,
                         std::size_t n, int P);

// Dense unless the compressed algorithm is predicted faster by more than `margin` (a fraction
// of the dense time; compression must pay clearly, as the model is coarse). An algorithm the
// model does not cover is kept.
CostDecision decide_allreduce(const CostInputs& in, const std::string& compressed,
                              const Codec& codec, std::size_t n, int P, double margin = 0.05);

// What "auto" decides from: whole runs of both candidates timed at n_trial = min(n,
// kTrialMaxElements) elements (collectives/cost_trial.hpp), agreed across ranks. Above the
// trial size both times are scaled by n / n_trial (per-element cost at 4 MB, where latency no
// longer counts). Dense unless the compressed run is faster by more than `margin`.
constexpr std::size_t kTrialMaxElements = std::size_t{1} << 20;
// Below this many bytes per rank "auto" is dense without a trial. Such a call is one
// latency-bound exchange on every link modelled (4 KiB take 0.33 us at 100 Gbit/s, 33 us at
// 1 Gbit/s, under the emulated link's per-message latency); compression saves bytes that cost
// nothing and adds messages that cost latency, and a trial of a few microseconds on shared
// cores picks the wrong side by noise (bench/results/auto-never-loses.md, "quiet run": 0.55-0.75x
// below 512 B on the host; at 1 Gbit/s sra first wins at 4 KB).
constexpr std::size_t kAutoMinBytes = 4096;
CostDecision decide_from_trial(double dense_s, double compressed_s, std::size_t n_trial,
                               const std::string& compressed, std::size_t n,
                               double margin = 0.05);

}  // namespace gradwire::coll
