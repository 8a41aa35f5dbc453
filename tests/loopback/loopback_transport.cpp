#include "loopback_transport.hpp"

#include <cstring>
#include <stdexcept>
#include <string>

#include "math/half.hpp"

namespace gwloop {

using gradwire::coll::Elem;
using gradwire::coll::Reduce;

namespace {

// acc[i] = acc[i] op x[i], as one element of type t (16-bit floats through float, rounded once
// per addition, as the MPI ops of src/transport/mpi_types.cpp do).
void combine(std::byte* acc, const std::byte* x, std::size_t n, Elem t, Reduce op) {
  namespace m = gradwire::math;
  for (std::size_t i = 0; i < n; ++i) {
    switch (t) {
      case Elem::F32: {
        float a, b;
        std::memcpy(&a, acc + 4 * i, 4);
        std::memcpy(&b, x + 4 * i, 4);
        a = op == Reduce::Sum ? a + b : (b > a ? b : a);
        std::memcpy(acc + 4 * i, &a, 4);
        break;
      }
      case Elem::F16:
      case Elem::BF16: {
        std::uint16_t ha, hb;
        std::memcpy(&ha, acc + 2 * i, 2);
        std::memcpy(&hb, x + 2 * i, 2);
        const bool h = t == Elem::F16;
        const float a = h ? m::half_to_float(ha) : m::bf16_to_float(ha);
        const float b = h ? m::half_to_float(hb) : m::bf16_to_float(hb);
        const float r = op == Reduce::Sum ? a + b : (b > a ? b : a);
        ha = h ? m::float_to_half(r) : m::float_to_bf16(r);
        std::memcpy(acc + 2 * i, &ha, 2);
        break;
      }
      case Elem::U64: {
        std::uint64_t a, b;
        std::memcpy(&a, acc + 8 * i, 8);
        std::memcpy(&b, x + 8 * i, 8);
        a = op == Reduce::Sum ? a + b : (b > a ? b : a);
        std::memcpy(acc + 8 * i, &a, 8);
        break;
      }
      case Elem::Byte: throw std::logic_error("loopback: bytes do not reduce");
    }
  }
}

std::vector<std::byte> copy_of(const void* p, std::size_t bytes) {
  std::vector<std::byte> v(bytes);
  if (bytes) std::memcpy(v.data(), p, bytes);
  return v;
}

}  // namespace

int LoopbackTransport::isend(const void* buf, std::size_t bytes, int peer, int tag) {
  sent_bytes += bytes;
  {
    std::lock_guard<std::mutex> lk(f_.m_);
    f_.mail_[{rank_, peer, tag}].push_back(copy_of(buf, bytes));
  }
  Op op{Kind::Send};
  op.done = true;
  ops_.push_back(op);
  return static_cast<int>(ops_.size()) - 1;
}

int LoopbackTransport::irecv(void* buf, std::size_t bytes, int peer, int tag) {
  Op op{Kind::Recv};
  op.buf = buf;
  op.bytes = bytes;
  op.peer = peer;
  op.tag = tag;
  ops_.push_back(op);
  return static_cast<int>(ops_.size()) - 1;
}

int LoopbackTransport::post_collective(Op op, const void* contribution, std::size_t bytes) {
  std::lock_guard<std::mutex> lk(f_.m_);
  op.seq = f_.next_coll_[static_cast<std::size_t>(rank_)]++;
  Fabric::Coll& c = f_.colls_[op.seq];
  c.in.resize(static_cast<std::size_t>(f_.size_));
  c.in[static_cast<std::size_t>(rank_)] = copy_of(contribution, bytes);
  ++c.arrived;
  ops_.push_back(op);
  return static_cast<int>(ops_.size()) - 1;
}

int LoopbackTransport::iallreduce(void* buf, std::size_t count, Elem t, Reduce red) {
  const std::size_t bytes = count * elem_size(t);
  sent_bytes += 2 * (size() - 1) * bytes / static_cast<std::size_t>(size());
  Op op{Kind::Allreduce};
  op.buf = buf;
  op.bytes = bytes;
  op.count = count;
  op.elem = t;
  op.red = red;
  return post_collective(op, buf, bytes);
}

int LoopbackTransport::iallgather(const void* send, void* recv, std::size_t bytes) {
  sent_bytes += (size() - 1) * bytes;
  Op op{Kind::Allgather};
  op.buf = recv;
  op.bytes = bytes;
  const void* own = send ? send : static_cast<const std::byte*>(recv) + bytes * rank_;
  return post_collective(op, own, bytes);
}

int LoopbackTransport::iallgatherv(const void* send, std::size_t bytes, void* recv,
                                   const int* counts, const int* displs) {
  sent_bytes += (size() - 1) * bytes;
  Op op{Kind::Allgatherv};
  op.buf = recv;
  op.counts = counts;
  op.displs = displs;
  return post_collective(op, send, bytes);
}

int LoopbackTransport::ireduce(const void* send, void* recv, std::size_t count, Elem t, int root) {
  const std::size_t bytes = count * elem_size(t);
  sent_bytes += bytes;
  Op op{Kind::Reduce};
  op.buf = recv;
  op.bytes = bytes;
  op.count = count;
  op.elem = t;
  op.peer = root;
  return post_collective(op, send, bytes);
}

int LoopbackTransport::ibcast(void* buf, std::size_t bytes, int root) {
  if (rank_ == root) sent_bytes += (size() - 1) * bytes;
  Op op{Kind::Bcast};
  op.buf = buf;
  op.bytes = bytes;
  op.peer = root;
  return post_collective(op, rank_ == root ? buf : nullptr, rank_ == root ? bytes : 0);
}

bool LoopbackTransport::try_complete(Op& op) {
  if (op.done) return true;
  if (op.kind == Kind::Recv) {
    auto it = f_.mail_.find({op.peer, rank_, op.tag});
    if (it == f_.mail_.end() || it->second.empty()) return false;
    const std::vector<std::byte>& m = it->second.front();
    if (m.size() > op.bytes) {
      throw std::runtime_error("loopback: a message of " + std::to_string(m.size()) +
                               " bytes for a receive of " + std::to_string(op.bytes));
    }
    if (!m.empty()) std::memcpy(op.buf, m.data(), m.size());
    it->second.pop_front();
    return op.done = true;
  }
  Fabric::Coll& c = f_.colls_[op.seq];
  if (c.arrived < f_.size_) return false;
  const std::size_t P = static_cast<std::size_t>(f_.size_);
  const std::size_t me = static_cast<std::size_t>(rank_);
  switch (op.kind) {
    case Kind::Allreduce:
    case Kind::Reduce: {
      if (op.kind == Kind::Reduce && rank_ != op.peer) break;
      std::vector<std::byte> acc = c.in[0];  // rank order: the same bits on every rank
      for (std::size_t r = 1; r < P; ++r)
        combine(acc.data(), c.in[r].data(), op.count, op.elem,
                op.kind == Kind::Reduce ? Reduce::Sum : op.red);
      if (op.bytes) std::memcpy(op.buf, acc.data(), op.bytes);
      break;
    }
    case Kind::Allgather:
      for (std::size_t r = 0; r < P; ++r)
        if (op.bytes) std::memcpy(static_cast<std::byte*>(op.buf) + r * op.bytes, c.in[r].data(), op.bytes);
      break;
    case Kind::Allgatherv:
      for (std::size_t r = 0; r < P; ++r) {
        if (c.in[r].size() != static_cast<std::size_t>(op.counts[r]))
          throw std::runtime_error("loopback: allgatherv count differs from the size sent");
        if (!c.in[r].empty())
          std::memcpy(static_cast<std::byte*>(op.buf) + op.displs[r], c.in[r].data(), c.in[r].size());
      }
      break;
    case Kind::Bcast:
      if (rank_ != op.peer && op.bytes)
        std::memcpy(op.buf, c.in[static_cast<std::size_t>(op.peer)].data(), op.bytes);
      break;
    default: break;
  }
  (void)me;
  return op.done = true;
}

int LoopbackTransport::test_some(int* done) {
  int n = 0;
  bool all = true;
  std::lock_guard<std::mutex> lk(f_.m_);
  for (std::size_t i = 0; i < ops_.size(); ++i) {
    Op& op = ops_[i];
    if (op.reported) continue;
    if (try_complete(op)) {
      op.reported = true;
      done[n++] = static_cast<int>(i);
    } else {
      all = false;
    }
  }
  if (n == 0 && all) return -1;
  return n;
}

void LoopbackTransport::reset() { ops_.clear(); }

}  // namespace gwloop
