// cuda::Status and the enqueue entry points: host-side argument checks, dispatch to the dense
// and sparse kernel families, and the host messages of the failures the kernels record.
#include <chrono>
#include <string>
#include <thread>

#include "codec/wire.hpp"
#include "codec_cuda.hpp"
#include "gradwire/error.hpp"
#include "kernels.cuh"
#include "launch.hpp"

namespace gradwire::cuda {

namespace {

std::string num(unsigned long long v) { return std::to_string(v); }

[[noreturn]] void raise(const dev::Words& w) {
  using namespace dev;
  std::string m;  // a message defect
  switch (w.code) {
    case kNonFinite:
      throw Error(ErrorCode::InvalidArgument, "CUDA encode: non-finite input in the bucket at global index " +
                                                  num(w.where) + " (quantizing codecs need finite input)");
    case kRange:
      throw Error(ErrorCode::InvalidArgument, "CUDA encode: the range or mean of the bucket at global index " +
                                                  num(w.where) + " overflows float (use scale=absmax)");
    case kCapacity:
      throw Error(ErrorCode::InvalidArgument, "CUDA encode: output holds " + num(w.want) +
                                                  " bytes, message needs " + num(w.got) +
                                                  " (use max_encoded_bytes)");
    case kBadScale: m = "a bucket scale is non-finite or negative (scale " + num(w.where) + ")";
      break;
    case kMagic: m = "bad magic (not a gradwire codec message)";
      break;
    case kVersion: m = "unsupported version " + num(w.got) + " (this build reads " + num(w.want) + ")";
      break;
    case kKind: m = "codec id " + num(w.got) + ", decoder expects " + num(w.want);
      break;
    case kBits: m = "bits " + num(w.got) + ", decoder expects " + num(w.want);
      break;
    case kUnknownFlags: m = "unknown flag bits " + num(w.got);
      break;
    case kFlags: m = "flags " + num(w.got) + ", decoder expects " + num(w.want);
      break;
    case kCountRange: m = "element count " + num(w.got) + " exceeds 2^40";
      break;
    case kCount: m = "element count " + num(w.got) + ", caller expects " + num(w.want);
      break;
    case kParam: m = "bucket/parameter " + num(w.got) + ", decoder expects " + num(w.want);
      break;
    case kReserved: m = "non-zero reserved fields";
      break;
    case kNnzRange: m = "nnz " + num(w.got) + " exceeds element count " + num(w.want);
      break;
    case kTruncatedBody:
      m = "truncated body: header says " + num(w.got) + " bytes, buffer holds " + num(w.want);
      break;
    case kDenseNnz: m = "dense codec with nnz " + num(w.got) + " != 0";
      break;
    case kBodySize: m = "body is " + num(w.got) + " bytes, its fields imply " + num(w.want);
      break;
    case kTopkCount: m = "top-k message carries " + num(w.got) + " values, expected " + num(w.want);
      break;
    case kIndexRange:
      m = "index " + num(w.got) + " out of range (count " + num(w.want) + ") at position " + num(w.where);
      break;
    case kIndexOrder: m = "indices not strictly increasing at position " + num(w.where);
      break;
    case kVarintTruncated: m = "truncated index varint";
      break;
    case kVarintLong: m = "index varint longer than 5 bytes (at body byte " + num(w.where) + ")";
      break;
    case kRandkCount:
      m = "random-k message carries " + num(w.got) + " values, its seed selects " + num(w.want);
      break;
    case kRandkOffset: m = "random-k offset out of range";
      break;
    default: break;
  }
  if (!m.empty()) throw Error(ErrorCode::WireFormat, "codec message: " + m);
  throw Error(ErrorCode::Internal, "CUDA codec: unknown device status " + num(w.code));
}

void check_dtype(DType t, const char* what) {
  if (t != DType::Float32 && t != DType::Float16 && t != DType::BFloat16) {
    throw Error(ErrorCode::Unsupported, std::string(what) + ": float32, float16 or bfloat16 only, not " +
                                            std::string(dtype_name(t)));
  }
}

// sign:outliers=K (docs/codecs.md, "Sign and momentum") has no kernel yet.
void check_spec(const Codec& c) {
  if (c.spec().outliers) throw Error(ErrorCode::Unsupported, "CUDA codecs: sign with outliers is host-only");
}

void decode_common(const Codec& c, const std::byte* d_in, std::size_t in_bytes, void* d_out, DType dt,
                   std::size_t count, bool add, Status& st, cudaStream_t stream) {
  check_spec(c);
  check_dtype(dt, "CUDA decode");
  if (count > wire::kMaxCount) throw Error(ErrorCode::InvalidArgument, "CUDA decode: count exceeds 2^40");
  if (d_out == nullptr && count != 0) throw Error(ErrorCode::InvalidArgument, "CUDA decode: null output");
  // The one check the host can make without reading the message.
  if (in_bytes < wire::kHeaderBytes || d_in == nullptr) {
    throw Error(ErrorCode::WireFormat, "codec message: truncated header: " + num(in_bytes) + " bytes, need " +
                                           num(wire::kHeaderBytes));
  }
  if (c.sparse() && count > 0xffffffffu) {
    throw Error(ErrorCode::Unsupported, "sparse codecs take slices of at most 2^32 - 1 elements");
  }
  const DecodeCall a{d_in, in_bytes, d_out, dt, add, count, st.device(), stream};
  if (c.sparse()) {
    sparse_decode(c, a);
  } else {
    dense_decode(c, a);
  }
}

}  // namespace

Status::Status() {
  check_cuda(cudaMalloc(reinterpret_cast<void**>(&words_), sizeof(dev::Words)), "cudaMalloc (codec status)");
  check_cuda(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming), "cudaEventCreate (codec status)");
  check_cuda(cudaMallocHost(reinterpret_cast<void**>(&host_), sizeof(dev::Words)), "cudaMallocHost (codec status)");
  // Zeroed from pinned memory: that copy has landed when cudaMemcpy returns, so kernels on
  // any stream see it (a cudaMemset would be queued on the legacy default stream, which a
  // cudaStreamNonBlocking stream does not wait for).
  *host_ = dev::Words{};
  check_cuda(cudaMemcpy(words_, host_, sizeof(dev::Words), cudaMemcpyHostToDevice), "cudaMemcpy (codec status)");
}

Status::~Status() {
  if (done_) cudaEventDestroy(done_);
  if (words_) cudaFree(words_);
  if (host_) cudaFreeHost(host_);
}

std::size_t Status::check(cudaStream_t stream, double timeout_s) {
  // The words come back by a copy on the stream itself (no pageable cudaMemcpy: that would
  // wait on the legacy default stream too), then the event is polled.
  check_cuda(cudaMemcpyAsync(host_, words_, sizeof(dev::Words), cudaMemcpyDeviceToHost, stream),
             "cudaMemcpyAsync (codec status)");
  check_cuda(cudaEventRecord(done_, stream), "cudaEventRecord (codec status)");
  // Polled, so that a wedged stream is a Timeout rather than a hang.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  for (int spins = 0;; ++spins) {
    const cudaError_t e = cudaEventQuery(done_);
    if (e == cudaSuccess) break;
    if (e != cudaErrorNotReady) check_cuda(e, "codec kernels");
    if (std::chrono::steady_clock::now() > deadline) {
      throw Error(ErrorCode::Timeout, "CUDA codec: stream work not finished after " + std::to_string(timeout_s) + " s");
    }
    if (spins > 64) std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
  const dev::Words w = *host_;
  if (w.code != dev::kOk) {
    *host_ = dev::Words{0, 0, 0, 0, 0, w.bytes};
    check_cuda(cudaMemcpyAsync(words_, host_, sizeof(dev::Words), cudaMemcpyHostToDevice, stream),
               "cudaMemcpyAsync (codec status)");
    // The next call may come on another stream: the clear must have landed (this stream only).
    check_cuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize (codec status)");
    raise(w);
  }
  return static_cast<std::size_t>(w.bytes);
}

std::size_t encode_async(const Codec& c, const void* d_in, DType in_dtype, std::size_t count,
                         std::uint64_t global_offset, std::uint64_t seed, std::uint64_t step, std::byte* d_out,
                         std::size_t out_cap, float* d_residual, Status& st, cudaStream_t stream) {
  check_spec(c);
  check_dtype(in_dtype, "CUDA encode");
  if (count > wire::kMaxCount) throw Error(ErrorCode::InvalidArgument, "CUDA encode: count exceeds 2^40");
  if (global_offset > wire::kMaxCount) {
    throw Error(ErrorCode::InvalidArgument, "CUDA encode: global_offset exceeds 2^40");
  }
  const std::size_t need = c.sparse() ? wire::kHeaderBytes : c.max_encoded_bytes(count);
  if (out_cap < need || d_out == nullptr || (d_in == nullptr && count != 0)) {
    throw Error(ErrorCode::InvalidArgument, "CUDA encode: null buffer or output smaller than " + num(need) + " bytes");
  }
  if (c.sparse() && count > 0xffffffffu) {
    throw Error(ErrorCode::Unsupported, "sparse codecs take slices of at most 2^32 - 1 elements");
  }
  const EncodeCall a{d_in, in_dtype, count, global_offset, seed, step, d_out, out_cap, d_residual, st.device(), stream};
  if (c.sparse()) {
    sparse_encode(c, a);
    return 0;
  }
  return dense_encode(c, a);
}

void decode_async(const Codec& c, const std::byte* d_in, std::size_t in_bytes, void* d_out, DType out_dtype,
                  std::size_t count, Status& st, cudaStream_t stream) {
  decode_common(c, d_in, in_bytes, d_out, out_dtype, count, false, st, stream);
}

void decode_add_async(const Codec& c, const std::byte* d_in, std::size_t in_bytes, float* d_acc,
                      std::size_t count, Status& st, cudaStream_t stream) {
  decode_common(c, d_in, in_bytes, d_acc, DType::Float32, count, true, st, stream);
}

std::size_t encode(const Codec& c, const void* d_in, DType in_dtype, std::size_t count, std::uint64_t global_offset,
                   std::uint64_t seed, std::uint64_t step, std::byte* d_out, std::size_t out_cap, float* d_residual,
                   cudaStream_t stream) {
  Status st;
  encode_async(c, d_in, in_dtype, count, global_offset, seed, step, d_out, out_cap, d_residual, st, stream);
  return st.check(stream);
}

void decode(const Codec& c, const std::byte* d_in, std::size_t in_bytes, void* d_out, DType out_dtype,
            std::size_t count, cudaStream_t stream) {
  Status st;
  decode_async(c, d_in, in_bytes, d_out, out_dtype, count, st, stream);
  st.check(stream);
}

void decode_add(const Codec& c, const std::byte* d_in, std::size_t in_bytes, float* d_acc, std::size_t count,
                cudaStream_t stream) {
  Status st;
  decode_add_async(c, d_in, in_bytes, d_acc, count, st, stream);
  st.check(stream);
}

}  // namespace gradwire::cuda
