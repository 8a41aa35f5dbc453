// The compressed algorithms behind a Plan (docs/compressed-collectives.md). Each one is a
// small state machine over a Transport: begin() does the first local work and posts the first
// operations; progress() reports completions, runs the next stage and returns true once `out`
// holds the result. Blocking runs and requests drive the same machine, so they cannot differ.
// All workspace is sized at construction: begin()/progress() allocate nothing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "codec/executor.hpp"
#include "transport/transport.hpp"
#include "gradwire/codec.hpp"
#include "gradwire/types.hpp"

namespace gradwire::coll {

// Error-feedback state an algorithm keeps: `length` floats that stand for global elements
// [offset, offset + length). The residual file stores, per global element, the sum over all
// slots of all ranks; `primary` slots are the ones a load refills.
struct ResidualSlot {
  float* data = nullptr;
  std::size_t offset = 0, length = 0;
  bool primary = false;
  exec::Executor* x = nullptr;  // where data lives (null: host memory)
};

class Algorithm {
 public:
  virtual ~Algorithm() = default;
  virtual void begin(const void* in, void* out, std::uint64_t step) = 0;
  virtual bool progress() = 0;
  std::vector<ResidualSlot> slots;
  double encode_s = 0, decode_s = 0;  // time of the current run spent in codecs
  // Algorithms whose buffers and state live on the GPU (powersgd_device.hpp) take device
  // pointers and enqueue on the stream set before begin(); their `slots` are a host copy of
  // the residual, refreshed before the plan reads it and written back after it sets it.
  virtual bool on_device() const { return false; }
  virtual void set_stream(void* /*cudaStream_t*/) {}
  virtual void residual_to_slots() {}
  virtual void slots_to_residual() {}
  // State besides the residual that the next run starts from and a checkpoint keeps: PowerSGD's
  // warm-start Q (identical on every rank). Empty for the others.
  virtual std::vector<float> warm_start() const { return {}; }
  virtual void set_warm_start(const std::vector<float>& /*q: warm_start()'s size*/) {}
};

class Dgc;  // collectives/dgc.hpp

struct AlgoParams {
  std::size_t count = 0;
  DType dtype = DType::Float32;
  ReduceOp op = ReduceOp::Sum;
  CodecSpec codec;
  bool error_feedback = false;
  std::uint64_t seed = 0;
  Dgc* dgc = nullptr;  // top-k plans with DGC options: per-step density, momentum masking
  // Where the codec and element operations run, and the memory of in, out and workspace.
  // Algorithms that take a device executor say so in the registry (device_native).
  exec::Executor* x = &exec::host_executor();
  double timeout_s = 300;  // device executors: the longest wait for their stream
  // SRA: owned shards sized by these weights (collectives/shards.hpp); empty: even.
  std::vector<double> shard_weights;
  // Host paths: elements per pipelined chunk (collectives/overlap.hpp); 0: the environment's
  // choice (GRADWIRE_OVERLAP, GRADWIRE_OVERLAP_CHUNK), by default the plain order.
  std::size_t overlap_chunk = 0;
};

// Allreduce of float32 by the engine's allreduce (16-bit floats: pre-divided for avg).
std::unique_ptr<Algorithm> make_dense_allreduce(Transport& t, const AlgoParams& p);
// Scatter-reduce-allgather over a dense codec.
std::unique_ptr<Algorithm> make_sra(Transport& t, const AlgoParams& p);
// Integer reduction on one agreed grid per bucket (Quantize codecs).
std::unique_ptr<Algorithm> make_shared_grid(Transport& t, const AlgoParams& p);
// Allgather of (index, value) payloads with a dense switch; random-k by a dense allreduce.
std::unique_ptr<Algorithm> make_sparse(Transport& t, const AlgoParams& p);
// Allgather: the engine's (codec none) or each block encoded once and decoded by all.
std::unique_ptr<Algorithm> make_dense_allgather(Transport& t, const AlgoParams& p);
std::unique_ptr<Algorithm> make_compressed_allgather(Transport& t, const AlgoParams& p);
// Dense reduce inside the node, `inner` among node leaders (null elsewhere), broadcast.
// The inner algorithm sums; hier applies avg with the global size.
std::unique_ptr<Algorithm> make_hier(Transport& local, std::unique_ptr<Algorithm> inner,
                                     const AlgoParams& p, int global_size);

}  // namespace gradwire::coll
