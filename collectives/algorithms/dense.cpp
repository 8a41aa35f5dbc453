// Dense allreduce: the engine's own (MPI_Iallreduce / ncclAllReduce through the transport);
// 16-bit floats are pre-divided by P for avg, so no partial sum can overflow.
#include "collectives/algorithms.hpp"
#include "collectives/staged.hpp"

#include <cstring>

#include "transport/element_ops.hpp"

namespace gradwire::coll {
namespace {

class DenseAllreduce final : public Staged {
 public:
  DenseAllreduce(Transport& t, const AlgoParams& p) : Staged(t, *p.x), p_(p) {}

 protected:
  bool advance() override {
    const std::size_t esz = dtype_size(p_.dtype);
    if (stage_ == 0) {
      if (p_.count == 0) return false;
      const bool is16 = p_.dtype != DType::Float32;
      if (is16 && p_.op == ReduceOp::Avg) {
        // Pre-divided by P, rounded once: no partial sum can overflow (docs/collectives.md).
        detail::predivide16(in_, out_, p_.count, p_.dtype, t_.size());
      } else {
        x_.copy(out_, in_, p_.count * esz);  // (16-bit avg is host-only: registry)
      }
      const Elem e = p_.dtype == DType::Float32   ? Elem::F32
                     : p_.dtype == DType::Float16 ? Elem::F16
                                                  : Elem::BF16;
      t_.iallreduce(out_, p_.count, e, Reduce::Sum);
      return true;
    }
    if (p_.dtype == DType::Float32 && p_.op == ReduceOp::Avg)
      x_.divide(static_cast<float*>(out_), p_.count, t_.size());
    if (device_) x_.finish(p_.timeout_s);  // the run ends when the stream has done it
    return false;
  }

 private:
  AlgoParams p_;
};

}  // namespace

std::unique_ptr<Algorithm> make_dense_allreduce(Transport& t, const AlgoParams& p) {
  return std::make_unique<DenseAllreduce>(t, p);
}

}  // namespace gradwire::coll
