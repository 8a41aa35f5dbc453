// Writes valid messages of every fuzzed codec into <dir>/<target>/seed-N: the seed corpus.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gradwire/codec.hpp"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s TARGET-NAME SPEC  (writes corpus/TARGET-NAME/)\n", argv[0]);
    return 2;
  }
  const std::filesystem::path dir = std::filesystem::path("corpus") / argv[1];
  std::filesystem::create_directories(dir);
  const gradwire::Codec c = gradwire::make_codec(argv[2]);
  int k = 0;
  for (const std::size_t n : {0u, 1u, 63u, 64u, 200u, 1000u}) {
    std::vector<float> x(n);
    for (std::size_t i = 0; i < n; ++i) x[i] = std::sin(static_cast<float>(i) * 0.37f) * (1.0f + i % 7);
    std::vector<std::byte> m(c.max_encoded_bytes(n));
    m.resize(c.encode(x.data(), gradwire::DType::Float32, n, 3, 5, 7, m.data(), m.size()));
    std::ofstream(dir / ("seed-" + std::to_string(k++)), std::ios::binary)
        .write(reinterpret_cast<const char*>(m.data()), static_cast<std::streamsize>(m.size()));
  }
  return 0;
}
