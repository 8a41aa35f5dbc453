#include "transport/mpi_types.hpp"

#include <cstdint>
#include <cstring>
#include <mutex>

#include "math/half.hpp"

namespace gradwire::detail {
namespace {

using math::bf16_to_float;
using math::float_to_bf16;
using math::float_to_half;
using math::half_to_float;

struct Half {
  static float load(std::uint16_t b) { return half_to_float(b); }
  static std::uint16_t store(float f) { return float_to_half(f); }
};
struct BF16 {
  static float load(std::uint16_t b) { return bf16_to_float(b); }
  static std::uint16_t store(float f) { return float_to_bf16(f); }
};
struct Add { static float apply(float a, float b) { return a + b; } };
struct Min { static float apply(float a, float b) { return b < a ? b : a; } };
struct Max { static float apply(float a, float b) { return b > a ? b : a; } };

// MPI hands user ops whatever alignment the caller's buffer had, hence memcpy.
template <class Fmt, class Op>
void reduce16(void* in, void* inout, int* len, MPI_Datatype*) {
  const auto* a = static_cast<const unsigned char*>(in);
  auto* b = static_cast<unsigned char*>(inout);
  for (int i = 0; i < *len; ++i) {
    std::uint16_t x, y;
    std::memcpy(&x, a + 2 * i, 2);
    std::memcpy(&y, b + 2 * i, 2);
    const std::uint16_t r = Fmt::store(Op::apply(Fmt::load(x), Fmt::load(y)));
    std::memcpy(b + 2 * i, &r, 2);
  }
}

// uint8 sum and prod wrap modulo 256 here. Open MPI 4.1.4's built-in MPI_SUM on MPI_UINT8_T
// saturates at 255 on its vectorised path (large counts) and wraps on the scalar one, so the
// result would depend on the count: we measured both in one run (tests/mpi).
template <class Op>
void reduce_u8(void* in, void* inout, int* len, MPI_Datatype*) {
  const auto* a = static_cast<const std::uint8_t*>(in);
  auto* b = static_cast<std::uint8_t*>(inout);
  for (int i = 0; i < *len; ++i) b[i] = static_cast<std::uint8_t>(Op::apply(a[i], b[i]));
}
struct WrapAdd { static unsigned apply(unsigned a, unsigned b) { return a + b; } };
struct WrapMul { static unsigned apply(unsigned a, unsigned b) { return a * b; } };

struct Registry {
  MPI_Datatype f16 = MPI_DATATYPE_NULL, bf16 = MPI_DATATYPE_NULL;
  MPI_Op ops[2][3] = {};  // [bf16?][sum, min, max]
  MPI_Op u8_sum = MPI_OP_NULL, u8_prod = MPI_OP_NULL;
};

Registry* g_registry = nullptr;
std::mutex g_mutex;

// Freed by MPI_Finalize through an attribute on MPI_COMM_SELF, the standard's hook for
// running code before finalization.
int free_registry(MPI_Comm, int, void*, void*) {
  std::lock_guard lock(g_mutex);
  if (g_registry) {
    for (auto& row : g_registry->ops)
      for (MPI_Op& op : row) MPI_Op_free(&op);
    MPI_Op_free(&g_registry->u8_sum);
    MPI_Op_free(&g_registry->u8_prod);
    MPI_Type_free(&g_registry->f16);
    MPI_Type_free(&g_registry->bf16);
    delete g_registry;
    g_registry = nullptr;
  }
  return MPI_SUCCESS;
}

template <class Fmt>
void make_ops(MPI_Op* row) {
  MPI_Op_create(&reduce16<Fmt, Add>, 1, &row[0]);
  MPI_Op_create(&reduce16<Fmt, Min>, 1, &row[1]);
  MPI_Op_create(&reduce16<Fmt, Max>, 1, &row[2]);
}

Registry& registry() {
  std::lock_guard lock(g_mutex);
  if (!g_registry) {
    auto* r = new Registry;
    MPI_Type_contiguous(2, MPI_BYTE, &r->f16);
    MPI_Type_set_name(r->f16, "gradwire_float16");
    MPI_Type_commit(&r->f16);
    MPI_Type_contiguous(2, MPI_BYTE, &r->bf16);
    MPI_Type_set_name(r->bf16, "gradwire_bfloat16");
    MPI_Type_commit(&r->bf16);
    make_ops<Half>(r->ops[0]);
    make_ops<BF16>(r->ops[1]);
    MPI_Op_create(&reduce_u8<WrapAdd>, 1, &r->u8_sum);
    MPI_Op_create(&reduce_u8<WrapMul>, 1, &r->u8_prod);
    int key = MPI_KEYVAL_INVALID;
    MPI_Comm_create_keyval(MPI_COMM_NULL_COPY_FN, &free_registry, &key, nullptr);
    MPI_Comm_set_attr(MPI_COMM_SELF, key, nullptr);
    g_registry = r;
  }
  return *g_registry;
}

}  // namespace

MPI_Datatype mpi_reduce_type(DType t) {
  switch (t) {
    case DType::Float16: return registry().f16;
    case DType::BFloat16: return registry().bf16;
    default: return mpi_move_type(t);
  }
}

MPI_Datatype mpi_move_type(DType t) {
  switch (t) {
    case DType::Float32: return MPI_FLOAT;
    case DType::Float64: return MPI_DOUBLE;
    case DType::Float16:
    case DType::BFloat16: return MPI_UINT16_T;
    case DType::Int32: return MPI_INT32_T;
    case DType::Int64: return MPI_INT64_T;
    case DType::UInt8: return MPI_UINT8_T;
  }
  return MPI_DATATYPE_NULL;
}

MPI_Op mpi_op(DType t, ReduceOp op) {
  if (t == DType::Float16 || t == DType::BFloat16) {
    const int row = t == DType::BFloat16 ? 1 : 0;
    switch (op) {
      case ReduceOp::Sum: return registry().ops[row][0];
      case ReduceOp::Min: return registry().ops[row][1];
      case ReduceOp::Max: return registry().ops[row][2];
      case ReduceOp::Prod:  // rejected by validation: see docs/collectives.md
      case ReduceOp::Avg: break;
    }
    return MPI_OP_NULL;
  }
  if (t == DType::UInt8 && op == ReduceOp::Sum) return registry().u8_sum;
  if (t == DType::UInt8 && op == ReduceOp::Prod) return registry().u8_prod;
  switch (op) {
    case ReduceOp::Sum: return MPI_SUM;
    case ReduceOp::Min: return MPI_MIN;
    case ReduceOp::Max: return MPI_MAX;
    case ReduceOp::Prod: return MPI_PROD;
    case ReduceOp::Avg: break;
  }
  return MPI_OP_NULL;
}

}  // namespace gradwire::detail
