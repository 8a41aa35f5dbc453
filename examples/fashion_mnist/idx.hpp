// Reader for the IDX files of (Fashion-)MNIST, gzipped as Debian's dataset-fashion-mnist
// ships them. Any defect (missing file, bad gzip stream, wrong magic, wrong shape,
// truncation, trailing bytes, a label out of range) throws std::runtime_error naming the path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace fm {

struct Dataset {
  std::size_t count = 0;       // examples
  std::size_t features = 0;    // 784 for 28x28 images
  std::vector<float> images;   // count x features, row-major, pixel / 255 in [0, 1]
  std::vector<std::uint8_t> labels;  // count, each in [0, 10)
};

// Reads <dir>/<prefix>-images-idx3-ubyte.gz and <dir>/<prefix>-labels-idx1-ubyte.gz
// (prefix "train" or "t10k") and checks that they agree.
Dataset load_split(const std::string& dir, const std::string& prefix);

// The directory Debian's dataset-fashion-mnist installs into.
inline constexpr const char* kDefaultDataDir = "/usr/share/datasets/fashion-mnist";

}  // namespace fm
