#include "collectives/cost_trial.hpp"

#include <algorithm>
#include <memory>
#include <vector>

#include "collectives/staged.hpp"

namespace gradwire::coll {

TrialTimes time_candidates(Transport& t, const AlgoParams& p, const std::string& compressed,
                           int reps, const std::function<void()>& sync,
                           const std::function<void(Algorithm&)>& drive,
                           const DenseRun& dense) {
  AlgoParams dp = p;
  dp.codec = CodecSpec{};  // dense: codec none
  dp.error_feedback = false;
  dp.dgc = nullptr;
  AlgoParams cp = p;
  cp.dgc = nullptr;
  std::unique_ptr<Algorithm> algo[2] = {
      make_dense_allreduce(t, dp),
      compressed == "sparse-allgather" ? make_sparse(t, cp) : make_sra(t, cp)};
  // Values of a gradient's spread (codecs' work can depend on them); the same on every rank
  // up to a rank offset, so sparse codecs select alike.
  std::vector<float> in(p.count), out(p.count);
  const int me = t.rank();
  for (std::size_t i = 0; i < p.count; ++i)
    in[i] = static_cast<float>(((i * 2654435761u) + static_cast<std::size_t>(me)) % 2001) /
                1000.0f -
            1.0f;
  std::vector<double> times[2];
  std::uint64_t step = 0;
  for (int r = -1; r < reps; ++r) {
    for (int k = 0; k < 2; ++k) {
      sync();
      const double t0 = now_s();
      if (k == 0 && dense) {
        dense(in.data(), out.data(), p.count);
      } else {
        algo[k]->begin(in.data(), out.data(), step++);
        drive(*algo[k]);
      }
      if (r >= 0) times[k].push_back(now_s() - t0);  // r == -1: the warm-up
    }
  }
  auto median = [](std::vector<double>& v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[v.size() / 2];
  };
  return {median(times[0]), median(times[1])};
}

}  // namespace gradwire::coll
