#include "idx.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <type_traits>

#include <zlib.h>

namespace fm {
namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error(path + ": " + what);
}

struct GzClose {
  void operator()(gzFile f) const { gzclose(f); }
};
using GzPtr = std::unique_ptr<std::remove_pointer_t<gzFile>, GzClose>;

// Reads exactly n bytes or fails, naming the path and the zlib error.
void read_exact(gzFile f, const std::string& path, void* out, std::size_t n, const char* what) {
  auto* p = static_cast<unsigned char*>(out);
  while (n > 0) {
    const unsigned chunk = n > (1u << 30) ? (1u << 30) : static_cast<unsigned>(n);
    const int got = gzread(f, p, chunk);
    if (got < 0) {
      int err = 0;
      const char* msg = gzerror(f, &err);
      fail(path, std::string("corrupt gzip stream while reading ") + what + " (" + msg + ")");
    }
    if (got == 0) fail(path, std::string("truncated: file ends inside ") + what);
    p += got;
    n -= static_cast<std::size_t>(got);
  }
}

std::uint32_t big_endian(const unsigned char* b) {
  return (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) |
         (std::uint32_t{b[2]} << 8) | std::uint32_t{b[3]};
}

// One IDX file of unsigned bytes with `rank` dimensions: returns the dims and the payload.
std::vector<unsigned char> read_idx(const std::string& path, int rank,
                                    std::vector<std::size_t>& dims) {
  errno = 0;
  GzPtr f(gzopen(path.c_str(), "rb"));
  if (!f) {
    fail(path, std::string("cannot open (") + (errno ? std::strerror(errno) : "out of memory") +
                   "); install Debian's dataset-fashion-mnist (scripts/setup.sh) or pass "
                   "--data-dir DIR holding the gzipped IDX files");
  }
  unsigned char magic[4];
  read_exact(f.get(), path, magic, 4, "the IDX header");
  // 0x00 0x00 <type 0x08 = unsigned byte> <number of dimensions>
  if (magic[0] != 0 || magic[1] != 0 || magic[2] != 0x08 || magic[3] != rank) {
    char buf[96];
    std::snprintf(buf, sizeof buf,
                  "not an IDX file of %d-dimensional unsigned bytes (magic %02x %02x %02x %02x)",
                  rank, magic[0], magic[1], magic[2], magic[3]);
    fail(path, buf);
  }
  dims.assign(static_cast<std::size_t>(rank), 0);
  std::size_t total = 1;
  for (int i = 0; i < rank; ++i) {
    unsigned char b[4];
    read_exact(f.get(), path, b, 4, "the IDX header");
    dims[static_cast<std::size_t>(i)] = big_endian(b);
    total *= dims[static_cast<std::size_t>(i)];
  }
  if (total == 0 || total > (std::size_t{1} << 32)) fail(path, "implausible IDX dimensions");
  std::vector<unsigned char> data(total);
  read_exact(f.get(), path, data.data(), total, "the data");
  unsigned char extra;
  const int more = gzread(f.get(), &extra, 1);
  if (more < 0) fail(path, "corrupt gzip stream after the data");
  if (more > 0) fail(path, "trailing bytes after the data the header announces");
  return data;
}

}  // namespace

Dataset load_split(const std::string& dir, const std::string& prefix) {
  const std::string ipath = dir + "/" + prefix + "-images-idx3-ubyte.gz";
  const std::string lpath = dir + "/" + prefix + "-labels-idx1-ubyte.gz";
  std::vector<std::size_t> idims, ldims;
  const std::vector<unsigned char> pixels = read_idx(ipath, 3, idims);
  const std::vector<unsigned char> labels = read_idx(lpath, 1, ldims);
  if (idims[1] != 28 || idims[2] != 28) {
    fail(ipath, "images are " + std::to_string(idims[1]) + "x" + std::to_string(idims[2]) +
                    ", expected 28x28");
  }
  if (idims[0] != ldims[0]) {
    fail(lpath, std::to_string(ldims[0]) + " labels for " + std::to_string(idims[0]) +
                    " images in " + ipath);
  }
  Dataset d;
  d.count = idims[0];
  d.features = idims[1] * idims[2];
  d.images.resize(pixels.size());
  for (std::size_t i = 0; i < pixels.size(); ++i) d.images[i] = pixels[i] * (1.0f / 255.0f);
  d.labels.assign(labels.begin(), labels.end());
  for (std::size_t i = 0; i < d.count; ++i) {
    if (d.labels[i] >= 10) {
      fail(lpath, "label " + std::to_string(d.labels[i]) + " at index " + std::to_string(i) +
                      " is not a class in [0, 10)");
    }
  }
  return d;
}

}  // namespace fm
