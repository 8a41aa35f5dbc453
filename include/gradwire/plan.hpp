// Persistent plans: compressed allreduce / allgather of one gradient buffer, made once and run
// every step. A plan owns its workspace and its error-feedback residual, so running it
// allocates nothing and a training code manages no extra memory.
//
//   gradwire::PlanConfig cfg;
//   cfg.count = n; cfg.codec = "q4"; cfg.op = gradwire::ReduceOp::Avg;
//   gradwire::Plan plan(comm, cfg);               // collective: ranks must agree
//   for (step...) plan.run(grad, grad);          // every rank ends with identical bits
//   const gradwire::PlanStats& s = plan.stats();  // wire bytes, encode/transfer/decode time
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gradwire/communicator.hpp"
#include "gradwire/types.hpp"

namespace gradwire {

// ReduceScatter (sharded training, ZeRO / FSDP): send holds count * size elements, rank r
// receives block r (count elements) of the reduced vector.
enum class PlanCollective { Allreduce, Allgather, ReduceScatter };

// One row-major matrix of a PowerSGD plan's buffer.
struct MatrixShape {
  std::size_t rows = 0, cols = 0;
};

struct PlanConfig {
  PlanCollective collective = PlanCollective::Allreduce;
  std::size_t count = 0;            // allreduce: elements; allgather, reduce-scatter: per rank
  DType dtype = DType::Float32;     // Float32, Float16 or BFloat16
  ReduceOp op = ReduceOp::Sum;      // Sum or Avg
  std::string codec = "none";       // a codec spec (docs/codecs.md)
  // "auto" (measured cost model: dense unless compression pays), "dense" (engine allreduce),
  // "sra" (scatter-reduce-allgather), "shared-grid"
  // (integer reduce on a common grid), "sparse-allgather", "hier" (dense in the node,
  // compressed among node leaders), "powersgd" (low-rank factors of the shapes below).
  // docs/compressed-collectives.md gives each one's bound.
  std::string algorithm = "auto";
  bool error_feedback = true;       // keep the residual of lossy codecs
  std::uint64_t seed = 0;           // stochastic rounding and random-k
  Memory memory = Memory::Host;

  // DGC options (Deep Gradient Compression; docs/compressed-collectives.md, "DGC options").
  // Float32 allreduce plans; all off by default.
  // momentum > 0: momentum correction. The plan keeps the velocity u = momentum * u + g and
  // encodes u (the residual accumulates velocity); the caller's optimizer then applies the
  // result with no momentum of its own.
  float momentum = 0.0f;
  bool momentum_masking = true;     // sparse codecs: zero u where this rank's message carried it
  float clip_norm = 0.0f;           // > 0: local gradient clipping, ||g||_2 <= clip_norm
  std::uint64_t warmup_steps = 0;   // top-k: density from warmup_density to the codec's, by
  double warmup_density = 0.25;     //   an exponential schedule over these steps

  // PowerSGD (algorithm "powersgd", codec "none"; docs/compressed-collectives.md): the buffer
  // holds these matrices back to back from element 0; each one with rank * (rows + cols) <
  // rows * cols travels as two factors of `powersgd_rank` columns, the others and the
  // elements after the last matrix travel dense.
  std::uint32_t powersgd_rank = 4;
  std::vector<MatrixShape> shapes;

  // Uneven ranks (algorithm sra, also when "auto" chooses it): each rank's owned shard sized
  // by its measured codec speed, agreed across ranks, so a slower rank reduces less
  // (docs/compressed-collectives.md, "Uneven ranks"). GRADWIRE_BALANCE_SHARDS=0|1 overrides.
  // Results stay within the same bound; reduce-scatter plans keep count elements per rank.
  bool balance_shards = false;
};

// What the last run did (per rank).
struct PlanStats {
  std::string algorithm;            // the algorithm "auto" chose
  std::size_t logical_bytes = 0;    // count * dtype size
  std::size_t wire_bytes = 0;       // bytes this rank sent
  // The last run's times. Blocking runs of a float32 "auto" plan running dense are timed only
  // where auto's next decision needs them (a few runs before each agreement; below 4 KiB per
  // rank, the floor, none), unless the timeline records: the others leave these at 0, since
  // two clock reads show in the time of a small allreduce between ranks on one host.
  double encode_s = 0, transfer_s = 0, decode_s = 0, total_s = 0;
  // How the data reached the network, fixed at construction: "mpi" (host buffers handed to
  // MPI); device plans (docs/compressed-collectives.md, "Device memory"): "nccl" (every rank
  // has its own GPU: grouped ncclSend/ncclRecv), "mpi-cuda-aware" (device pointers to a
  // CUDA-aware MPI), "mpi+staged-compressed" (only the compressed messages through pinned
  // host memory), or, for algorithms without a device path, "mpi+staged-pinned" (the whole
  // buffer through pinned host memory, then the host algorithm); device powersgd plans:
  // "mpi+device-powersgd" (the algorithm on the GPU, only its factors through pinned memory;
  // within float rounding of a host plan).
  std::string transport;
  // Device plans: what MPI says of CUDA-awareness (Open MPI's MPIX_Query_cuda_support):
  // 1 device pointers accepted, 0 not, -1 unknown or not queried (host plans). Every rank's
  // 1 picks "mpi-cuda-aware" where NCCL cannot be used.
  int cuda_aware_mpi = -1;
  double stage_s = 0;  // device plans: copies between device and pinned buffers and waits for
                       // them (part of total_s; run_on_stream does not wait for the copy back)
  // "auto" allreduce plans with a codec (float32, not hier): the cost model's predictions,
  // fixed at construction, to set beside the measured total_s (docs/compressed-collectives.md,
  // "Cost model"). All 0 and cost_source "" where the model did not run; cost_source
  // "floor" (predictions 0): below 4 KiB per rank, dense without a trial.
  double predicted_s = 0;             // of the algorithm chosen
  double predicted_dense_s = 0;       // of the engine's dense allreduce
  double predicted_compressed_s = 0;  // of the compressed algorithm (sra, sparse-allgather)
  std::string cost_source;            // "trial:<src>", src = probe|memory|cache-file
  // Where the codec ran, fixed at construction: "host" (host plans, and device plans staged
  // whole through host memory) or "cuda" (device plans on the GPU: the kernels on a stream).
  std::string executor;
  // Device plans: bytes copied between device and host memory in the last run (whole-buffer
  // staging: the buffer down and the result up; "mpi+staged-compressed": only messages).
  std::size_t pcie_bytes = 0;
  // Balanced sra plans: the agreed weight of each rank's shard (fastest 16); empty: even
  // shards (not balanced, or no rank slower than the fastest by more than 20 %).
  std::vector<double> shard_weights;
  // "auto" plans: why `algorithm` runs ("floor: ...", "trial: ...", and for plans that
  // re-decide "measured: ..." or the reason of the last switch), how many times the plan
  // switched since creation, and each candidate's measured time (the mean over ranks of each
  // rank's median of its recent blocking runs, agreed across ranks; 0 where it has not run or
  // not yet been agreed). Host float32 allreduce plans whose choice came from a trial
  // re-decide from these (docs/compressed-collectives.md, "How auto decides"); every rank runs
  // the same algorithm.
  std::string decision;
  int switches = 0;
  double measured_dense_s = 0, measured_compressed_s = 0;
};

class Plan {
 public:
  // Collective over comm. Ranks that disagree on the configuration (count, dtype, op, codec,
  // algorithm, collective) all fail with ErrorCode::Mismatch, naming the field.
  // Arguments are checked before anything is allocated: a count above 2^29 - 1 elements in
  // all, an invalid dtype/op/collective value is InvalidArgument on every rank.
  Plan(Communicator& comm, const PlanConfig& config);
  // Like ~Request: waits for a run in flight at most until its deadline, never aborts, and
  // leaks what MPI may still use after a failed or abandoned run.
  ~Plan();
  Plan(Plan&&) noexcept;
  Plan& operator=(Plan&&) noexcept;

  // Allreduce plans: recv may equal send. Allgather plans: send holds count elements, recv
  // count * size, rank r's block at r * count. Reduce-scatter plans: send holds count * size
  // elements (block j at j * count), recv count (may lie inside send).
  //
  // Memory::Device plans staged whole (stats().executor == "host"): run_on_stream copies send
  // to the plan's pinned buffer on cuda_stream (a cudaStream_t; null: the default stream),
  // waits for the stream (bounded by the communicator's timeout), runs the host algorithm and
  // enqueues the copy of the result to recv on the stream, then returns: work enqueued later
  // on that stream sees the result.
  // run() on a device plan is run_on_stream on the default stream and waits for the result.
  // Device plans on the GPU (stats().executor == "cuda") enqueue their kernels and transfers
  // on cuda_stream and return once the stream has completed them (no device-wide sync);
  // start() on such a plan runs on the default stream. start() on a staged device plan is
  // Unsupported.
  void run(const void* send, void* recv);
  Request start(const void* send, void* recv);  // non-blocking; wait() on the request
  void run_on_stream(const void* send, void* recv, void* cuda_stream);  // device buffers
  // start() on cuda_stream (a cudaStream_t; null: the default stream): Memory::Device plans on
  // the GPU (stats().executor == "cuda") enqueue their work after what cuda_stream holds;
  // staged device plans are Unsupported, as for start().
  Request start_on_stream(const void* send, void* recv, void* cuda_stream);

  const PlanStats& stats() const;
  // Names this plan's runs on the timeline (docs/timeline.md), e.g. "bucket 3: fc.weight ..
  // conv1.bias"; the latest label names the plan's track. Local, no communication; nothing
  // when the timeline is off.
  void set_label(const std::string& label);
  const PlanConfig& config() const;
  std::uint64_t step() const;  // runs so far; keys stochastic rounding
  // Restores step() from a checkpoint, so a resumed run draws the same stochastic rounding
  // and density warm-up as the run it continues. Not collective; every rank sets the same.
  void set_step(std::uint64_t step);

  void reset_residual();
  // Collective. The file is keyed by global element range, so a run restarted on a different
  // number of ranks loads it correctly. Version 2 (CRC-32 checked; non-finite values, trailing
  // bytes and version 1 files are rejected with InvalidArgument).
  void save_residual(const std::string& path) const;
  void load_residual(const std::string& path);
  // Collective over this plan's communicator: takes over the residual of `from` (the same
  // collective and global element count, typically made on the communicator this one's was
  // shrunk from) by global element range, as a save/load through a file would, without
  // touching `from`'s communicator. Residual held by lost ranks is gone.
  void carry_residual(const Plan& from);
  // The same after a membership change (Communicator::respawn/grow): ranks that were members
  // pass their old plan, joiners nullptr. Survivors share their total; joiners start at zero
  // (allgather plans: the holder of each range takes it). Conserves the survivors' total.
  void carry_residual(const Plan* from);

  // Checkpoints. Collective. Everything the next run starts from: each rank's error-feedback
  // residual, DGC velocity (momentum), PowerSGD's warm-start Q and step(); rank 0 writes and
  // reads the file (the plan-state file, docs/compressed-collectives.md, "Checkpoints").
  // Loaded on as many ranks as saved it, by a plan of the same configuration, the next run
  // gives the very bits the uninterrupted plan's would. On another number of ranks (or where
  // "auto" chose an algorithm with other residual slots) the residual and the velocity are
  // summed by global element and shared out as load_residual does (the totals are kept); Q
  // and the step carry unchanged. A file of another configuration (collective, elements,
  // dtype, codec, algorithm, error_feedback, momentum, powersgd_rank and shapes), version, or
  // a corrupted one is InvalidArgument on every rank, naming what differs.
  void save_state(const std::string& path) const;
  void load_state(const std::string& path);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// One-shot compressed allreduce for callers that want no state (no error feedback).
void allreduce_compressed(Communicator& comm, const void* send, void* recv, std::size_t count,
                          DType dtype, ReduceOp op, const std::string& codec,
                          const std::string& algorithm = "auto");

}  // namespace gradwire
