#include "collectives/registry.hpp"

#include "collectives/algorithms/powersgd.hpp"
#include "collectives/algorithms/reduce_scatter.hpp"

namespace gradwire::coll {
namespace {

bool is16(const Selection& s) { return s.dtype != DType::Float32; }
bool none(const Selection& s) { return s.codec.kind == CodecKind::None; }

Refusal ok() { return {}; }
Refusal refuse(ErrorCode c, const char* why) { return {c, why}; }

constexpr const char* kUncompressed = "algorithm dense sends uncompressed data: use codec none";

// Allreduce ----------------------------------------------------------------------------

Refusal dense_supports(const Selection& s) {
  if (!none(s) && !is16(s)) return refuse(ErrorCode::InvalidArgument, kUncompressed);
  if (is16(s) && !none(s))
    return refuse(ErrorCode::Unsupported, "float16/bfloat16 plans take codec none");
  return ok();
}
// The compressed allreduce algorithms take float32 (the constructors check the codec kind).
Refusal f32_supports(const Selection& s) {
  if (is16(s)) {
    return refuse(ErrorCode::Unsupported,
                  "float16/bfloat16 plans go through the engine's dense allreduce (algorithm auto "
                  "or dense); compress a float32 buffer instead");
  }
  return ok();
}
Refusal powersgd_supports(const Selection& s) {
  if (!none(s) || is16(s)) {
    return refuse(ErrorCode::InvalidArgument,
                  "algorithm powersgd compresses float32 by itself: use codec none and float32");
  }
  return ok();
}

std::unique_ptr<Algorithm> make_dense_b(const Build& b) { return make_dense_allreduce(b.t, b.p); }
std::unique_ptr<Algorithm> make_sra_b(const Build& b) { return make_sra(b.t, b.p); }
std::unique_ptr<Algorithm> make_grid_b(const Build& b) { return make_shared_grid(b.t, b.p); }
std::unique_ptr<Algorithm> make_sparse_b(const Build& b) { return make_sparse(b.t, b.p); }
std::unique_ptr<Algorithm> make_powersgd_b(const Build& b) {
  static const std::vector<MatrixShape> kNone;
  return make_powersgd(b.t, b.p, b.powersgd_rank, b.shapes ? *b.shapes : kNone);
}
// The codec's algorithm among node leaders; it sums (hier divides by the global size).
std::unique_ptr<Algorithm> make_hier_b(const Build& b) {
  std::unique_ptr<Algorithm> inner;
  if (b.leaders) {
    AlgoParams q = b.p;
    q.op = ReduceOp::Sum;
    if (q.codec.sparse()) inner = make_sparse(*b.leaders, q);
    else if (q.codec.kind == CodecKind::None) inner = make_dense_allreduce(*b.leaders, q);
    else inner = make_sra(*b.leaders, q);
  }
  return make_hier(*b.local, std::move(inner), b.p, b.global_size);
}

// Allgather, reduce-scatter ----------------------------------------------------------------

Refusal dense_nocodec(const Selection& s) {
  return none(s) ? ok() : refuse(ErrorCode::InvalidArgument, kUncompressed);
}
Refusal any(const Selection&) { return ok(); }
Refusal rs_dense_supports(const Selection& s) {
  if (!none(s)) return refuse(ErrorCode::InvalidArgument, kUncompressed);
  if (is16(s)) return refuse(ErrorCode::Unsupported, "reduce-scatter plans take float32");
  return ok();
}
Refusal rs_supports(const Selection& s) {
  return is16(s) ? refuse(ErrorCode::Unsupported, "reduce-scatter plans take float32") : ok();
}
std::unique_ptr<Algorithm> make_dag_b(const Build& b) { return make_dense_allgather(b.t, b.p); }
std::unique_ptr<Algorithm> make_cag_b(const Build& b) {
  return make_compressed_allgather(b.t, b.p);
}
std::unique_ptr<Algorithm> make_rs_b(const Build& b) { return make_reduce_scatter(b.t, b.p); }

// On a device executor: float32 and a dense codec (fixed-size messages, CUDA kernels).
bool native_dense_f32(const Selection& s) { return !is16(s) && !s.codec.sparse(); }

}  // namespace

const std::vector<AlgorithmEntry>& algorithms() {
  using C = PlanCollective;
  static const std::vector<AlgorithmEntry> table = {
      {"dense", C::Allreduce, true, false, dense_supports, make_dense_b, native_dense_f32},
      {"sra", C::Allreduce, true, false, f32_supports, make_sra_b, native_dense_f32},
      {"shared-grid", C::Allreduce, true, false, f32_supports, make_grid_b},
      {"sparse-allgather", C::Allreduce, true, false, f32_supports, make_sparse_b},
      {"hier", C::Allreduce, true, true, f32_supports, make_hier_b},
      {"powersgd", C::Allreduce, true, false, powersgd_supports, make_powersgd_b},
      {"dense", C::Allgather, true, false, dense_nocodec, make_dag_b},
      {"compressed-allgather", C::Allgather, true, false, any, make_cag_b, native_dense_f32},
      {"dense", C::ReduceScatter, true, false, rs_dense_supports, make_rs_b, native_dense_f32},
      {"compressed-reduce-scatter", C::ReduceScatter, true, false, rs_supports, make_rs_b,
       native_dense_f32},
  };
  return table;
}

const AlgorithmEntry* find_algorithm(PlanCollective c, const std::string& name) {
  for (const AlgorithmEntry& e : algorithms())
    if (e.collective == c && name == e.name) return &e;
  return nullptr;
}

std::string accepted_names(std::optional<PlanCollective> only) {
  std::string s = "auto";
  for (const AlgorithmEntry& e : algorithms()) {
    if (!e.nameable || (only && e.collective != *only) ||
        s.find(std::string(", ") + e.name) != std::string::npos)
      continue;
    s += std::string(", ") + e.name;
  }
  return s;
}

bool known_name(const std::string& name) {
  if (name == "auto") return true;
  for (const AlgorithmEntry& e : algorithms())
    if (e.nameable && name == e.name) return true;
  return false;
}

std::string static_choice(const Selection& s, bool multi_node) {
  switch (s.collective) {
    case PlanCollective::Allgather: return none(s) ? "dense" : "compressed-allgather";
    case PlanCollective::ReduceScatter: return none(s) ? "dense" : "compressed-reduce-scatter";
    case PlanCollective::Allreduce: break;
  }
  if (none(s) || is16(s)) return "dense";
  if (multi_node) return "hier";
  return s.codec.sparse() ? "sparse-allgather" : "sra";
}

const char* collective_name(PlanCollective c) {
  return c == PlanCollective::Allreduce   ? "allreduce"
         : c == PlanCollective::Allgather ? "allgather"
                                          : "reduce-scatter";
}

}  // namespace gradwire::coll
