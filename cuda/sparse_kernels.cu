// top-k, random-k and threshold on the GPU: the same indices, values and bytes as the host
// codec (src/codec/sparse_codec.cpp, select.cpp). Every size that depends on the data (nnz,
// the varint bytes) stays on the device; the host enqueues with upper bounds and learns the
// message size from the Status when it waits.
//
// Top-k is exact: an MSB-first radix select over the 31-bit magnitude keys (abs_bits: NaN >
// +inf > finite) finds K, the k-th largest key: a histogram of the top 11 bits over all n
// keys, a compaction of the keys in K's bin, two finer histograms (11, 9 bits) over those; ties at K go to the lowest indices, as on the host: the cut-off index T of the
// last tie taken comes from a compaction of the equal keys, which reads nothing when every
// tie is taken (the common case for real gradients). One selection pass then keeps
// key > K, or key == K and index <= T, in index order.
#include <cub/device/device_scan.cuh>
#include <cub/device/device_select.cuh>
#include <thrust/iterator/counting_iterator.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <type_traits>
#include <vector>

#include "codec/detail.hpp"
#include "codec/wire.hpp"
#include "kernels.cuh"
#include "launch.hpp"
#include "math/philox.hpp"
#include "math/quant.hpp"

namespace gradwire::cuda {

namespace {

using namespace dev;

constexpr int kThreads = 256;

// Grid-stride kernels that stream n elements: enough blocks to fill the GPU, no more.
unsigned stream_blocks(std::size_t n) {
  const std::size_t b = (n + kThreads * 8 - 1) / (kThreads * 8);
  return static_cast<unsigned>(b == 0 ? 1 : (b < 8192 ? b : 8192));
}

// The scratch pool: gradwire's own stream-ordered pool per device, which keeps what it has
// reserved (release threshold: unlimited), so that the sparse codecs' scratch costs no
// mapping after the first calls. The device's default pool is left as the caller set it.
cudaMemPool_t scratch_pool() {
  static std::mutex mu;
  static std::map<int, cudaMemPool_t> pools;
  int dev = 0;
  check_cuda(cudaGetDevice(&dev), "cudaGetDevice");
  const std::lock_guard<std::mutex> lock(mu);
  auto it = pools.find(dev);
  if (it != pools.end()) return it->second;
  cudaMemPoolProps props{};
  props.allocType = cudaMemAllocationTypePinned;
  props.location.type = cudaMemLocationTypeDevice;
  props.location.id = dev;
  cudaMemPool_t pool = nullptr;
  check_cuda(cudaMemPoolCreate(&pool, &props), "cudaMemPoolCreate (sparse codec scratch)");
  std::uint64_t keep = ~std::uint64_t{0};
  check_cuda(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep), "cudaMemPoolSetAttribute");
  pools[dev] = pool;
  return pool;
}

// Stream-ordered scratch, freed (stream-ordered) when the call's kernels are enqueued.
struct Scratch {
  cudaStream_t s;
  cudaMemPool_t pool;
  std::vector<void*> ptrs;
  explicit Scratch(cudaStream_t st) : s(st), pool(scratch_pool()) {}
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  template <class T>
  T* get(std::size_t n) {
    void* p = nullptr;
    check_cuda(cudaMallocFromPoolAsync(&p, n * sizeof(T) + 16, pool, s), "cudaMallocFromPoolAsync (sparse codec scratch)");
    ptrs.push_back(p);
    return static_cast<T*>(p);
  }
  ~Scratch() {
    for (void* p : ptrs) cudaFreeAsync(p, s);
  }
};

// ---- encode: the values to sparsify ------------------------------------------------------

template <int DT>
__global__ void add_to_residual(const void* x, float* e, std::size_t n, const Words* st) {
  if (failed(st)) return;
  for (std::size_t i = std::size_t{blockIdx.x} * kThreads + threadIdx.x; i < n; i += std::size_t{gridDim.x} * kThreads) {
    e[i] += load1<DT>(x, i);
  }
}
template <int DT>
__global__ void to_float(const void* x, float* v, std::size_t n) {
  for (std::size_t i = std::size_t{blockIdx.x} * kThreads + threadIdx.x; i < n; i += std::size_t{gridDim.x} * kThreads) {
    v[i] = load1<DT>(x, i);
  }
}

// ---- top-k radix select ------------------------------------------------------------------

struct Select {
  std::uint32_t prefix, mask;  // the digits of K found so far
  std::uint32_t krem;          // rank of K among the keys that match prefix (1-based)
  std::uint32_t last_bin;      // keys equal to K (after the last pass)
  std::uint32_t need_t;        // not every key equal to K is taken
  std::uint32_t t;             // last index with key == K that is taken
  std::uint32_t n_eq;          // compaction count of key == K
};

template <int SHIFT, int BITS>
__global__ void __launch_bounds__(kThreads) key_histogram(const float* v, std::size_t n, const std::uint32_t* n_dev,
                                                          const Select* sel, std::uint32_t* hist) {
  __shared__ std::uint32_t h[1u << BITS];
  for (unsigned i = threadIdx.x; i < (1u << BITS); i += kThreads) h[i] = 0;
  if (n_dev) n = *n_dev;  // a count the previous kernels left on the device
  __syncthreads();
  const std::uint32_t prefix = sel->prefix, mask = sel->mask;
  const std::size_t n4 = reinterpret_cast<std::uintptr_t>(v) % 16 == 0 ? n / 4 : 0;
  auto add = [&](float x) {
    const std::uint32_t k = math::abs_bits(x);
    if ((k & mask) == prefix) atomicAdd(&h[(k >> SHIFT) & ((1u << BITS) - 1u)], 1u);
  };
  for (std::size_t i = std::size_t{blockIdx.x} * kThreads + threadIdx.x; i < n4; i += std::size_t{gridDim.x} * kThreads) {
    const float4 q = __ldg(reinterpret_cast<const float4*>(v) + i);
    add(q.x), add(q.y), add(q.z), add(q.w);
  }
  for (std::size_t i = 4 * n4 + std::size_t{blockIdx.x} * kThreads + threadIdx.x; i < n;
       i += std::size_t{gridDim.x} * kThreads) {
    add(v[i]);
  }
  __syncthreads();
  for (unsigned i = threadIdx.x; i < (1u << BITS); i += kThreads) {
    if (h[i]) atomicAdd(&hist[i], h[i]);
  }
}

// One warp: the digit holding the krem-th largest matching key, from the top bin down.
template <int SHIFT, int BITS>
__global__ void pick_digit(const std::uint32_t* hist, Select* sel, bool last) {
  constexpr unsigned kBins = 1u << BITS, kPer = kBins / 32;
  const unsigned lane = threadIdx.x;
  const std::uint32_t krem = sel->krem;  // read by every lane before the shuffles, so before any write
  // Lane l covers bins [kBins - (l+1) kPer, kBins - l kPer): lane 0 the highest.
  std::uint32_t mine = 0;
  for (unsigned j = 0; j < kPer; ++j) mine += hist[kBins - 1 - (lane * kPer + j)];
  std::uint32_t incl = mine;
  for (int o = 1; o < 32; o <<= 1) {
    const std::uint32_t y = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= static_cast<unsigned>(o)) incl += y;
  }
  const std::uint32_t before = incl - mine;
  const bool here = before < krem && krem <= incl;
  if (here) {
    std::uint32_t c = before;
    for (unsigned j = 0; j < kPer; ++j) {
      const unsigned bin = kBins - 1 - (lane * kPer + j);
      if (c + hist[bin] >= krem) {
        sel->prefix |= bin << SHIFT;
        sel->mask |= ((1u << BITS) - 1u) << SHIFT;
        sel->krem = krem - c;
        if (last) {
          sel->last_bin = hist[bin];
          sel->need_t = krem - c < hist[bin] ? 1u : 0u;
          sel->t = 0xffffffffu;
        }
        break;
      }
      c += hist[bin];
    }
  }
}

__global__ void init_select(Select* sel, Select init) { *sel = init; }

struct EqualToK {
  const float* v;
  const Select* sel;
  __device__ bool operator()(std::uint32_t i) const {
    return sel->need_t != 0 && math::abs_bits(v[i]) == sel->prefix;
  }
};

__global__ void pick_t(const std::uint32_t* eq, Select* sel) {
  if (sel->need_t) sel->t = eq[sel->krem - 1];
}

struct InTopBin {
  const Select* sel;
  __device__ bool operator()(float x) const { return (math::abs_bits(x) & sel->mask) == sel->prefix; }
};

struct TopKeep {
  const float* v;
  const Select* sel;
  __device__ bool operator()(std::uint32_t i) const {
    const std::uint32_t k = math::abs_bits(v[i]);
    return k > sel->prefix || (k == sel->prefix && i <= sel->t);
  }
};
struct AtLeast {
  const float* v;
  std::uint32_t tb;
  __device__ bool operator()(std::uint32_t i) const { return math::abs_bits(v[i]) >= tb; }
};
// Random-k's choice as one flag per slice element, one Philox block per four global indices
// (the words the host's randk_select draws; a predicate per element would draw each block
// four times). Decode passes the message header: its seed, step, offset and probability.
struct RandkDraw {
  std::uint32_t param;
  std::uint64_t seed, step, goff;
};
__global__ void randk_flags(RandkDraw d, const DevHeader* h, const Words* st, std::size_t n, unsigned char* flags) {
  if (h) {
    if (failed(st)) return;
    d = RandkDraw{h->param, h->seed, h->step, h->offset};
  }
  const std::uint64_t first = d.goff >> 2, last = (d.goff + n - 1) >> 2;
  for (std::uint64_t t = std::uint64_t{blockIdx.x} * kThreads + threadIdx.x; first + t <= last;
       t += std::uint64_t{gridDim.x} * kThreads) {
    const std::uint64_t blk = first + t;
    const math::U32x4 w = math::philox_block(d.seed, d.step, math::Stream::RandK, blk);
#pragma unroll
    for (unsigned c = 0; c < 4; ++c) {
      const std::uint64_t g = 4 * blk + c;
      if (g >= d.goff && g < d.goff + n) flags[g - d.goff] = w.v[c] <= d.param ? 1 : 0;
    }
  }
}

// ---- encode: the body ----------------------------------------------------------------------

__device__ inline std::uint32_t varint_size(std::uint32_t v) {
  return v < (1u << 7) ? 1 : v < (1u << 14) ? 2 : v < (1u << 21) ? 3 : v < (1u << 28) ? 4 : 5;
}
__device__ inline std::uint32_t delta_at(const std::uint32_t* idx, std::size_t j) {
  return j == 0 ? idx[0] : idx[j] - idx[j - 1] - 1u;
}

__global__ void varint_sizes(const std::uint32_t* idx, const std::uint32_t* nnz, std::size_t upper, std::uint32_t* sz) {
  const std::size_t m = *nnz;
  for (std::size_t j = std::size_t{blockIdx.x} * kThreads + threadIdx.x; j <= upper; j += std::size_t{gridDim.x} * kThreads) {
    sz[j] = j < m ? varint_size(delta_at(idx, j)) : 0u;
  }
}

struct Body {
  unsigned char* out;  // the message
  std::size_t cap;
  const std::uint32_t* idx;
  const std::uint32_t* nnz;
  const std::uint32_t* var_off;  // delta coding: byte offsets, var_off[nnz] = index bytes; else null
  bool indices;                  // false: random-k
  bool f16;
  const float* v;
  float* residual;
  Words* st;
};

__device__ inline std::uint64_t index_bytes(const Body& b, std::size_t m) {
  if (!b.indices) return 0;
  return b.var_off ? b.var_off[m] : 4ull * m;
}

// Indices, values and the residual of the sent entries; then (write_header) the header.
__global__ void write_body(Body b) {
  if (failed(b.st)) return;
  const std::size_t m = *b.nnz;
  const std::uint64_t ib = index_bytes(b, m);
  const std::uint64_t vsize = b.f16 ? 2 : 4;
  if (wire::kHeaderBytes + ib + vsize * m > b.cap) return;  // write_header reports it
  unsigned char* body = b.out + wire::kHeaderBytes;
  unsigned char* vals = body + ib;
  for (std::size_t j = std::size_t{blockIdx.x} * kThreads + threadIdx.x; j < m; j += std::size_t{gridDim.x} * kThreads) {
    const std::uint32_t i = b.idx[j];
    if (b.indices) {
      if (b.var_off) {
        std::uint32_t d = delta_at(b.idx, j);
        unsigned char* p = body + b.var_off[j];
        while (d >= 0x80u) {
          *p++ = static_cast<unsigned char>((d & 0x7fu) | 0x80u);
          d >>= 7;
        }
        *p = static_cast<unsigned char>(d);
      } else {
        for (int k = 0; k < 4; ++k) body[4 * j + k] = static_cast<unsigned char>(i >> (8 * k));
      }
    }
    const float x = b.v[i];
    float back = x;
    if (b.f16) {
      const std::uint16_t w = math::float_to_half(x);
      vals[2 * j] = static_cast<unsigned char>(w);
      vals[2 * j + 1] = static_cast<unsigned char>(w >> 8);
      back = math::half_to_float(w);
    } else {
      st_f32(vals + 4 * j, x);
    }
    if (b.residual) b.residual[i] = x - back;
  }
}

__global__ void write_sparse_header(Body b, HeaderImage img) {
  if (failed(b.st)) return;
  const std::size_t m = *b.nnz;
  const std::uint64_t body = index_bytes(b, m) + (b.f16 ? 2ull : 4ull) * m;
  if (wire::kHeaderBytes + body > b.cap) {
    fail(b.st, kCapacity, 0, wire::kHeaderBytes + body, b.cap);
    return;
  }
  for (std::size_t i = 0; i < wire::kHeaderBytes; ++i) b.out[i] = img.b[i];
  for (int k = 0; k < 4; ++k) b.out[20 + k] = static_cast<unsigned char>(m >> (8 * k));      // nnz
  for (int k = 0; k < 8; ++k) b.out[24 + k] = static_cast<unsigned char>(body >> (8 * k));   // body_bytes
  b.st->bytes = wire::kHeaderBytes + body;
}

// ---- decode ---------------------------------------------------------------------------------

struct SparseView {
  const unsigned char* in;
  const DevHeader* h;
  Words* st;
  std::uint32_t vsize;
};

__global__ void sparse_header(const unsigned char* in, Expect ex, DevHeader* out, std::uint32_t vsize,
                              int coding /* 0 u32, 1 delta, 2 none (random-k) */, Words* st) {
  if (failed(st)) return;
  DevHeader h;
  if (!check_header(in, ex, st, &h)) return;
  const std::uint64_t values = std::uint64_t{vsize} * h.nnz;
  if (coding == 0 && h.body_bytes != (4ull + vsize) * h.nnz) return fail(st, kBodySize, 0, h.body_bytes, (4ull + vsize) * h.nnz);
  if (coding == 1 && h.body_bytes < values) return fail(st, kBodySize, 0, h.body_bytes, values);
  if (coding == 2) {
    if (h.offset > wire::kMaxCount) return fail(st, kRandkOffset);
    if (h.body_bytes != values) return fail(st, kBodySize, 0, h.body_bytes, values);
  }
  *out = h;
}

__global__ void check_u32_indices(SparseView s, std::size_t upper, std::uint64_t count) {
  if (failed(s.st)) return;
  const std::size_t m = s.h->nnz;
  const unsigned char* body = s.in + wire::kHeaderBytes;
  for (std::size_t j = std::size_t{blockIdx.x} * kThreads + threadIdx.x; j < m && j < upper;
       j += std::size_t{gridDim.x} * kThreads) {
    const std::uint32_t x = ld_u32(body + 4 * j);
    if (x >= count) fail(s.st, kIndexRange, j, x, count);
    if (j > 0 && x <= ld_u32(body + 4 * (j - 1))) fail(s.st, kIndexOrder, j);
  }
}

// Delta coding, in parallel: a byte without the continuation bit ends a varint; an exclusive
// scan of those ends numbers the varints; each end walks back over its (at most 5) bytes.
__global__ void varint_ends(SparseView s, std::size_t upper, std::uint32_t* end) {
  const bool ok = !failed(s.st);
  const std::uint64_t avail = ok ? s.h->body_bytes - std::uint64_t{s.vsize} * s.h->nnz : 0;
  const unsigned char* body = s.in + wire::kHeaderBytes;
  for (std::size_t p = std::size_t{blockIdx.x} * kThreads + threadIdx.x; p <= upper; p += std::size_t{gridDim.x} * kThreads) {
    end[p] = p < avail && (body[p] & 0x80u) == 0 ? 1u : 0u;
  }
}

__global__ void varint_values(SparseView s, std::size_t upper, const std::uint32_t* end, const std::uint32_t* ord,
                              std::uint64_t* dv) {
  if (failed(s.st)) return;
  const std::uint64_t m = s.h->nnz;
  const std::uint64_t avail = s.h->body_bytes - std::uint64_t{s.vsize} * m;
  const unsigned char* body = s.in + wire::kHeaderBytes;
  for (std::size_t p = std::size_t{blockIdx.x} * kThreads + threadIdx.x; p < avail && p < upper;
       p += std::size_t{gridDim.x} * kThreads) {
    if (!end[p]) continue;
    const std::uint32_t j = ord[p];
    if (j >= m) continue;  // more varints than nnz: the count check below reports it
    std::size_t start = p;
    while (start > 0 && (body[start - 1] & 0x80u) != 0 && p - start < 5) --start;
    if (p - start >= 5) {
      fail(s.st, kVarintLong, start);
      continue;
    }
    std::uint64_t d = 0;
    for (std::size_t q = start; q <= p; ++q) d |= std::uint64_t{body[q] & 0x7fu} << (7 * (q - start));
    dv[j] = d + (j > 0 ? 1u : 0u);
  }
}

// The varints must be exactly nnz and fill the index bytes exactly.
__global__ void varint_count(SparseView s, std::size_t upper, const std::uint32_t* end, const std::uint32_t* ord) {
  if (failed(s.st)) return;
  const std::uint64_t m = s.h->nnz;
  const std::uint64_t avail = s.h->body_bytes - std::uint64_t{s.vsize} * m;
  if (avail > upper) return fail(s.st, kVarintTruncated);
  const std::uint64_t total = ord[avail];
  if (total < m || (avail > 0 && !end[avail - 1])) return fail(s.st, kVarintTruncated);
  if (total > m) fail(s.st, kBodySize, 0, s.h->body_bytes, s.h->body_bytes);
}

__global__ void check_delta_indices(SparseView s, std::size_t upper, const std::uint64_t* idx, std::uint64_t count) {
  if (failed(s.st)) return;
  const std::size_t m = s.h->nnz;
  for (std::size_t j = std::size_t{blockIdx.x} * kThreads + threadIdx.x; j < m && j < upper;
       j += std::size_t{gridDim.x} * kThreads) {
    if (idx[j] >= count) fail(s.st, kIndexRange, j, idx[j], count);
  }
}

__global__ void randk_count(const DevHeader* h, const std::uint32_t* selected, Words* st) {
  if (failed(st)) return;
  if (*selected != h->nnz) fail(st, kRandkCount, 0, h->nnz, *selected);
}

template <int DT>
__global__ void zero_out(void* out, std::size_t n, bool vec, const Words* st) {
  if (failed(st)) return;
  const float z[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (std::size_t i = 4 * (std::size_t{blockIdx.x} * kThreads + threadIdx.x); i < n;
       i += 4 * std::size_t{gridDim.x} * kThreads) {
    store4<DT>(out, i, static_cast<unsigned>(n - i < 4 ? n - i : 4), vec, z);
  }
}

// Index j of the message: from the u32 array, the scanned varints, or random-k's selection.
struct IndexSource {
  const unsigned char* u32;
  const std::uint64_t* delta;
  const std::uint32_t* sel;
  __device__ std::size_t operator()(std::size_t j) const {
    if (u32) return ld_u32(u32 + 4 * j);
    if (delta) return static_cast<std::size_t>(delta[j]);
    return sel[j];
  }
};

template <int DT, bool ADD>
__global__ void scatter(SparseView s, IndexSource ix, std::size_t upper, void* out) {
  if (failed(s.st)) return;
  const std::size_t m = s.h->nnz;
  const unsigned char* vals = s.in + wire::kHeaderBytes + (s.h->body_bytes - std::uint64_t{s.vsize} * m);
  for (std::size_t j = std::size_t{blockIdx.x} * kThreads + threadIdx.x; j < m && j < upper;
       j += std::size_t{gridDim.x} * kThreads) {
    const float v = s.vsize == 2 ? math::half_to_float(static_cast<std::uint16_t>(vals[2 * j] | (vals[2 * j + 1] << 8)))
                                 : ld_f32(vals + 4 * j);
    const std::size_t i = ix(j);
    if constexpr (ADD) {
      static_cast<float*>(out)[i] += v;
    } else {
      store1<DT>(out, i, v);
    }
  }
}

template <class F>
void by_dtype(DType t, F&& f) {
  switch (t) {
    case DType::Float16: return f(std::integral_constant<int, 2>{});
    case DType::BFloat16: return f(std::integral_constant<int, 3>{});
    default: return f(std::integral_constant<int, 0>{});
  }
}

// cub::DeviceSelect::Flagged: the indices i in [0, n) with flags[i] != 0, in order.
void select_flagged(Scratch& sc, std::size_t n, const unsigned char* flags, std::uint32_t* out,
                    std::uint32_t* selected, cudaStream_t stream) {
  thrust::counting_iterator<std::uint32_t> first(0);
  std::size_t temp = 0;
  check_cuda(cub::DeviceSelect::Flagged(nullptr, temp, first, flags, out, selected, static_cast<std::int64_t>(n), stream),
             "cub::DeviceSelect::Flagged");
  void* t = sc.get<unsigned char>(temp);
  check_cuda(cub::DeviceSelect::Flagged(t, temp, first, flags, out, selected, static_cast<std::int64_t>(n), stream),
             "cub::DeviceSelect::Flagged");
}

// Random-k's indices of a slice of n elements (n > 0).
void randk_indices(Scratch& sc, std::size_t n, RandkDraw d, const DevHeader* h, const Words* st,
                   std::uint32_t* out, std::uint32_t* selected, cudaStream_t stream) {
  unsigned char* flags = sc.get<unsigned char>(n);
  randk_flags<<<stream_blocks(n / 4 + 2), kThreads, 0, stream>>>(d, h, st, n, flags);
  select_flagged(sc, n, flags, out, selected, stream);
}

// cub::DeviceSelect::If over the indices [0, n), into out, count into *selected.
template <class Pred>
void select_indices(Scratch& sc, std::size_t n, Pred pred, std::uint32_t* out, std::uint32_t* selected,
                    cudaStream_t stream) {
  thrust::counting_iterator<std::uint32_t> first(0);
  std::size_t temp = 0;
  check_cuda(cub::DeviceSelect::If(nullptr, temp, first, out, selected, static_cast<std::int64_t>(n), pred, stream),
             "cub::DeviceSelect::If");
  void* t = sc.get<unsigned char>(temp);
  check_cuda(cub::DeviceSelect::If(t, temp, first, out, selected, static_cast<std::int64_t>(n), pred, stream),
             "cub::DeviceSelect::If");
}

// cub::DeviceSelect::If over the values v[0, n), into out (in order), count into *selected.
template <class Pred>
void select_values(Scratch& sc, const float* v, std::size_t n, Pred pred, float* out, std::uint32_t* selected,
                   cudaStream_t stream) {
  std::size_t temp = 0;
  check_cuda(cub::DeviceSelect::If(nullptr, temp, v, out, selected, static_cast<std::int64_t>(n), pred, stream),
             "cub::DeviceSelect::If");
  void* t = sc.get<unsigned char>(temp);
  check_cuda(cub::DeviceSelect::If(t, temp, v, out, selected, static_cast<std::int64_t>(n), pred, stream),
             "cub::DeviceSelect::If");
}

template <class In, class Out>
void exclusive_sum(Scratch& sc, In in, Out out, std::size_t n, cudaStream_t stream) {
  std::size_t temp = 0;
  check_cuda(cub::DeviceScan::ExclusiveSum(nullptr, temp, in, out, static_cast<std::int64_t>(n), stream),
             "cub::DeviceScan::ExclusiveSum");
  void* t = sc.get<unsigned char>(temp);
  check_cuda(cub::DeviceScan::ExclusiveSum(t, temp, in, out, static_cast<std::int64_t>(n), stream),
             "cub::DeviceScan::ExclusiveSum");
}
template <class In, class Out>
void inclusive_sum(Scratch& sc, In in, Out out, std::size_t n, cudaStream_t stream) {
  std::size_t temp = 0;
  check_cuda(cub::DeviceScan::InclusiveSum(nullptr, temp, in, out, static_cast<std::int64_t>(n), stream),
             "cub::DeviceScan::InclusiveSum");
  void* t = sc.get<unsigned char>(temp);
  check_cuda(cub::DeviceScan::InclusiveSum(t, temp, in, out, static_cast<std::int64_t>(n), stream),
             "cub::DeviceScan::InclusiveSum");
}

// The k-th largest key and the tie cut-off, into sel (device).
void topk_threshold(Scratch& sc, const float* v, std::size_t n, std::size_t k, Select* sel, cudaStream_t stream) {
  const Select init{0, 0, static_cast<std::uint32_t>(k), 0, 0, 0xffffffffu, 0};
  // By kernel argument: a copy from pageable host memory may wait for the stream.
  init_select<<<1, 1, 0, stream>>>(sel, init);
  std::uint32_t* hist = sc.get<std::uint32_t>(2048 * 3);
  check_cuda(cudaMemsetAsync(hist, 0, sizeof(std::uint32_t) * 2048 * 3, stream), "cudaMemsetAsync");
  const unsigned blocks = stream_blocks(n / 4 + 1);
  key_histogram<20, 11><<<blocks, kThreads, 0, stream>>>(v, n, nullptr, sel, hist);
  pick_digit<20, 11><<<1, 32, 0, stream>>>(hist, sel, false);
  // The keys in K's top-11-bit bin (for gradients, a few per cent of n) go to a compact
  // buffer, so the two finer passes read those instead of all n keys again.
  float* cand = sc.get<float>(n);
  std::uint32_t* ncand = sc.get<std::uint32_t>(1);
  select_values(sc, v, n, InTopBin{sel}, cand, ncand, stream);
  key_histogram<9, 11><<<blocks, kThreads, 0, stream>>>(cand, n, ncand, sel, hist + 2048);
  pick_digit<9, 11><<<1, 32, 0, stream>>>(hist + 2048, sel, false);
  key_histogram<0, 9><<<blocks, kThreads, 0, stream>>>(cand, n, ncand, sel, hist + 4096);
  pick_digit<0, 9><<<1, 32, 0, stream>>>(hist + 4096, sel, true);
  std::uint32_t* eq = sc.get<std::uint32_t>(n);
  select_indices(sc, n, EqualToK{v, sel}, eq, &sel->n_eq, stream);
  pick_t<<<1, 1, 0, stream>>>(eq, sel);
}

}  // namespace

void sparse_encode(const Codec& c, const EncodeCall& a) {
  const CodecSpec& s = c.spec();
  const std::size_t n = a.count;
  Scratch sc(a.stream);
  // v: the values to sparsify (the residual after += x with error feedback).
  const float* v = nullptr;
  if (a.residual) {
    by_dtype(a.dtype, [&](auto dt) {
      add_to_residual<decltype(dt)::value><<<stream_blocks(n), kThreads, 0, a.stream>>>(a.in, a.residual, n, a.status);
    });
    v = a.residual;
  } else if (a.dtype == DType::Float32) {
    v = static_cast<const float*>(a.in);
  } else {
    float* tmp = sc.get<float>(n);
    by_dtype(a.dtype, [&](auto dt) {
      to_float<decltype(dt)::value><<<stream_blocks(n), kThreads, 0, a.stream>>>(a.in, tmp, n);
    });
    v = tmp;
  }
  wire::Header h = wire::header_for(s, n);
  const std::size_t upper = s.kind == CodecKind::TopK ? c.topk_count(n) : n;  // most entries
  if (s.kind == CodecKind::RandK) {  // the header carries the draw, even for an empty slice
    h.param = detail::randk_param(s.ratio);
    h.seed = a.seed;
    h.step = a.step;
    h.offset = a.global_offset;
  }
  std::uint32_t* idx = sc.get<std::uint32_t>(n);
  std::uint32_t* nnz = sc.get<std::uint32_t>(1);
  check_cuda(cudaMemsetAsync(nnz, 0, sizeof(std::uint32_t), a.stream), "cudaMemsetAsync");
  if (n > 0) {
    switch (s.kind) {
      case CodecKind::TopK: {
        const std::size_t k = c.topk_count(n);
        Select* sel = sc.get<Select>(1);
        topk_threshold(sc, v, n, k, sel, a.stream);
        select_indices(sc, n, TopKeep{v, sel}, idx, nnz, a.stream);
        break;
      }
      case CodecKind::RandK:
        randk_indices(sc, n, RandkDraw{h.param, a.seed, a.step, a.global_offset}, nullptr, a.status, idx, nnz,
                      a.stream);
        break;
      default: select_indices(sc, n, AtLeast{v, math::abs_bits(s.threshold)}, idx, nnz, a.stream); break;
    }
  }
  const bool delta = s.kind != CodecKind::RandK && s.index == IndexCoding::Delta;
  std::uint32_t* var_off = nullptr;
  if (delta) {
    std::uint32_t* sz = sc.get<std::uint32_t>(upper + 1);
    var_off = sc.get<std::uint32_t>(upper + 1);
    varint_sizes<<<stream_blocks(upper + 1), kThreads, 0, a.stream>>>(idx, nnz, upper, sz);
    exclusive_sum(sc, sz, var_off, upper + 1, a.stream);
  }
  HeaderImage img;
  wire::write_header(h, reinterpret_cast<std::byte*>(img.b));
  const Body b{reinterpret_cast<unsigned char*>(a.out), a.cap, idx, nnz, var_off, s.kind != CodecKind::RandK,
               s.value == ValueType::F16, v, a.residual, a.status};
  write_body<<<stream_blocks(upper), kThreads, 0, a.stream>>>(b);
  write_sparse_header<<<1, 1, 0, a.stream>>>(b, img);
  check_cuda(cudaGetLastError(), "CUDA sparse encode kernel launch");
}

void sparse_decode(const Codec& c, const DecodeCall& a) {
  const CodecSpec& s = c.spec();
  const wire::Header eh = wire::header_for(s, a.count);
  Expect ex{};
  ex.count = a.count;
  ex.in_bytes = a.in_bytes;
  ex.topk_k = c.topk_count(a.count);
  ex.param = eh.param;
  ex.kind = static_cast<std::uint8_t>(eh.kind);
  ex.bits = eh.bits;
  ex.flags = eh.flags;
  ex.randk = s.kind == CodecKind::RandK;
  ex.topk = s.kind == CodecKind::TopK;
  const int coding = ex.randk ? 2 : s.index == IndexCoding::Delta ? 1 : 0;
  const std::uint32_t vsize = s.value == ValueType::F16 ? 2 : 4;
  Scratch sc(a.stream);
  DevHeader* hdr = sc.get<DevHeader>(1);
  const auto* in = reinterpret_cast<const unsigned char*>(a.in);
  sparse_header<<<1, 1, 0, a.stream>>>(in, ex, hdr, vsize, coding, a.status);
  const SparseView view{in, hdr, a.status, vsize};
  // nnz <= body / vsize <= what the buffer holds: every launch below is bounded by it.
  const std::size_t body_max = a.in_bytes - wire::kHeaderBytes;
  std::size_t upper = body_max / vsize;
  if (upper > a.count) upper = a.count;
  IndexSource ix{nullptr, nullptr, nullptr};
  if (coding == 0) {
    check_u32_indices<<<stream_blocks(upper), kThreads, 0, a.stream>>>(view, upper, a.count);
    ix.u32 = in + wire::kHeaderBytes;
  } else if (coding == 1) {
    std::uint32_t* end = sc.get<std::uint32_t>(body_max + 1);
    std::uint32_t* ord = sc.get<std::uint32_t>(body_max + 1);
    std::uint64_t* dv = sc.get<std::uint64_t>(upper + 1);
    std::uint64_t* idx = sc.get<std::uint64_t>(upper + 1);
    check_cuda(cudaMemsetAsync(dv, 0, sizeof(std::uint64_t) * (upper + 1), a.stream), "cudaMemsetAsync");
    varint_ends<<<stream_blocks(body_max + 1), kThreads, 0, a.stream>>>(view, body_max, end);
    exclusive_sum(sc, end, ord, body_max + 1, a.stream);
    varint_count<<<1, 1, 0, a.stream>>>(view, body_max, end, ord);
    varint_values<<<stream_blocks(body_max), kThreads, 0, a.stream>>>(view, body_max, end, ord, dv);
    inclusive_sum(sc, dv, idx, upper + 1, a.stream);
    check_delta_indices<<<stream_blocks(upper), kThreads, 0, a.stream>>>(view, upper, idx, a.count);
    ix.delta = idx;
  } else {
    std::uint32_t* sel = sc.get<std::uint32_t>(a.count);
    std::uint32_t* cnt = sc.get<std::uint32_t>(1);
    check_cuda(cudaMemsetAsync(cnt, 0, sizeof(std::uint32_t), a.stream), "cudaMemsetAsync");
    if (a.count > 0) randk_indices(sc, a.count, RandkDraw{}, hdr, a.status, sel, cnt, a.stream);
    randk_count<<<1, 1, 0, a.stream>>>(hdr, cnt, a.status);
    ix.sel = sel;
  }
  if (a.add) {
    scatter<0, true><<<stream_blocks(upper), kThreads, 0, a.stream>>>(view, ix, upper, a.out);
  } else {
    by_dtype(a.dtype, [&](auto dt) {
      constexpr int DT = decltype(dt)::value;
      const bool vec = reinterpret_cast<std::uintptr_t>(a.out) % (DT == 0 ? 16 : 8) == 0;
      zero_out<DT><<<stream_blocks(a.count / 4 + 1), kThreads, 0, a.stream>>>(a.out, a.count, vec, a.status);
      scatter<DT, false><<<stream_blocks(upper), kThreads, 0, a.stream>>>(view, ix, upper, a.out);
    });
  }
  check_cuda(cudaGetLastError(), "CUDA sparse decode kernel launch");
}

}  // namespace gradwire::cuda
