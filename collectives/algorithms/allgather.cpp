// Allgather of uncompressed blocks: the engine's own, in place.
#include "collectives/algorithms.hpp"
#include "collectives/staged.hpp"

#include <cstring>

namespace gradwire::coll {
namespace {

class DenseAllgather final : public Staged {
 public:
  DenseAllgather(Transport& t, const AlgoParams& p) : Staged(t), p_(p) {}

 protected:
  bool advance() override {
    if (stage_ > 0 || p_.count == 0) return false;
    const std::size_t block = p_.count * dtype_size(p_.dtype);
    std::byte* own = static_cast<std::byte*>(out_) + block * static_cast<std::size_t>(t_.rank());
    if (own != in_) std::memmove(own, in_, block);
    t_.iallgather(nullptr, out_, block);  // in place: the own block is already there
    return true;
  }

 private:
  AlgoParams p_;
};

}  // namespace

std::unique_ptr<Algorithm> make_dense_allgather(Transport& t, const AlgoParams& p) {
  return std::make_unique<DenseAllgather>(t, p);
}

}  // namespace gradwire::coll
