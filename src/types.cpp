#include "gradwire/types.hpp"

#include "gradwire/error.hpp"

namespace gradwire {

std::size_t dtype_size(DType t) noexcept {
  switch (t) {
    case DType::Float32: return 4;
    case DType::Float64: return 8;
    case DType::Float16: return 2;
    case DType::BFloat16: return 2;
    case DType::Int32: return 4;
    case DType::Int64: return 8;
    case DType::UInt8: return 1;
  }
  return 0;
}

std::string_view dtype_name(DType t) noexcept {
  switch (t) {
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
    case DType::Float16: return "float16";
    case DType::BFloat16: return "bfloat16";
    case DType::Int32: return "int32";
    case DType::Int64: return "int64";
    case DType::UInt8: return "uint8";
  }
  return "invalid-dtype";
}

std::string_view op_name(ReduceOp op) noexcept {
  switch (op) {
    case ReduceOp::Sum: return "sum";
    case ReduceOp::Avg: return "avg";
    case ReduceOp::Min: return "min";
    case ReduceOp::Max: return "max";
    case ReduceOp::Prod: return "prod";
  }
  return "invalid-op";
}

bool is_valid(DType t) noexcept { return dtype_size(t) != 0; }
bool is_valid(ReduceOp op) noexcept { return op_name(op) != "invalid-op"; }

bool is_float(DType t) noexcept {
  return t == DType::Float32 || t == DType::Float64 || t == DType::Float16 ||
         t == DType::BFloat16;
}

const char* error_code_name(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::InvalidArgument: return "invalid argument";
    case ErrorCode::Unsupported: return "unsupported";
    case ErrorCode::Timeout: return "timeout";
    case ErrorCode::Finalized: return "finalized";
    case ErrorCode::Mismatch: return "mismatch across ranks";
    case ErrorCode::Mpi: return "MPI error";
    case ErrorCode::Nccl: return "NCCL error";
    case ErrorCode::Cuda: return "CUDA error";
    case ErrorCode::WireFormat: return "malformed wire data";
    case ErrorCode::Internal: return "internal error";
    case ErrorCode::PeerFailed: return "peer failed";
  }
  return "unknown error";
}

}  // namespace gradwire
