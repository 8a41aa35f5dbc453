// Uneven ranks (issue 13, bench/results/uneven-ranks.md): an SRA allreduce with balanced
// shards (PlanConfig::balance_shards) against even shards, in one run, beside what the cost
// model predicts for each layout. Slow a rank on purpose with GRADWIRE_SLOW_RANK=<rank>:<f>.
//
//   mpirun -np 4 -x GRADWIRE_SLOW_RANK=3:2 gw_uneven_ranks [-n ELEMENTS] [-r ROUNDS] [--codec SPEC]
//
// Each round times both plans (order alternating, a barrier before each run, the slowest
// rank's time); the table gives the medians and the median of the per-round ratios.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <gradwire/codec.hpp>
#include <gradwire/communicator.hpp>
#include <gradwire/plan.hpp>

#include "collectives/cost_probe.hpp"
#include "collectives/shards.hpp"

#include "median.hpp"

namespace {

using gradwire::bench::median;

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rc = 0;
  {
    std::size_t n = std::size_t{1} << 24;
    int rounds = 5;
    std::string codec = "q8";
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "-n" && i + 1 < argc) n = std::strtoull(argv[++i], nullptr, 10);
      else if (a == "-r" && i + 1 < argc) rounds = std::atoi(argv[++i]);
      else if (a == "--codec" && i + 1 < argc) codec = argv[++i];
      else {
        std::fprintf(stderr, "gw_uneven_ranks: unknown argument %s\n", a.c_str());
        MPI_Abort(MPI_COMM_WORLD, 2);
      }
    }
    gradwire::Communicator comm(MPI_COMM_WORLD);
    const int P = comm.size(), me = comm.rank();
    gradwire::PlanConfig cfg;
    cfg.count = n;
    cfg.codec = codec;
    cfg.algorithm = "sra";
    cfg.balance_shards = true;
    gradwire::Plan bal(comm, cfg);
    cfg.balance_shards = false;
    gradwire::Plan even(comm, cfg);

    // The model's figures: the link from the probe, each rank's codec cost gathered.
    auto check = [](int r, const char* what) {
      if (r != MPI_SUCCESS) throw std::runtime_error(what);
    };
    const gradwire::Codec c(gradwire::parse_codec(codec));
    const gradwire::coll::CostMeasurement link = gradwire::coll::measure_costs(MPI_COMM_WORLD, c, check);
    const gradwire::coll::RankCosts costs = gradwire::coll::gather_rank_costs(MPI_COMM_WORLD, c, check);
    const std::size_t unit = c.bucket_size() ? c.bucket_size() : 1;
    const std::vector<double>& w = bal.stats().shard_weights;
    const auto off_even = gradwire::coll::shard_offsets(n, unit, P);
    const auto off_bal = gradwire::coll::shard_offsets(n, unit, P, w);
    const double pe = gradwire::coll::predict_sra_shards(link.in, costs, c, off_even);
    const double pb = gradwire::coll::predict_sra_shards(link.in, costs, c, off_bal);

    std::vector<float> x(n), y(n);
    for (std::size_t i = 0; i < n; ++i)
      x[i] = static_cast<float>(((i * 2654435761u) + static_cast<std::size_t>(me)) % 2001) / 1000.0f - 1.0f;
    bal.run(x.data(), y.data());  // warm-up
    even.run(x.data(), y.data());
    std::vector<double> tb, te, ratio;
    auto timed = [&](gradwire::Plan& p) {
      MPI_Barrier(MPI_COMM_WORLD);
      const double t0 = now_s();
      p.run(x.data(), y.data());
      double t = now_s() - t0;
      MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
      return t;
    };
    for (int r = 0; r < rounds; ++r) {
      double b = 0, e = 0;
      if (r % 2 == 0) b = timed(bal), e = timed(even);
      else e = timed(even), b = timed(bal);
      tb.push_back(b);
      te.push_back(e);
      ratio.push_back(e / b);
    }
    if (me == 0) {
      const char* slow = std::getenv("GRADWIRE_SLOW_RANK");
      std::printf("# gw_uneven_ranks: %d ranks, %zu float32 (%zu B), codec %s, sra, error feedback; "
                  "GRADWIRE_SLOW_RANK=%s; %d rounds\n",
                  P, n, n * 4, codec.c_str(), slow ? slow : "(unset)", rounds);
      std::printf("# per-rank codec cost (ns/element, enc dec):");
      for (int r = 0; r < P; ++r) std::printf(" r%d %.2f %.2f", r, costs.enc[r] * 1e9, costs.dec[r] * 1e9);
      std::printf("\n# link: alpha %.3g s, beta %.3g s/B\n", link.in.alpha, link.in.beta);
      std::printf("# weights:");
      if (w.empty()) std::printf(" (even: no rank slower by more than 20 %%)");
      for (double v : w) std::printf(" %g", v);
      std::printf("\n# shards (elements):");
      for (int r = 0; r < P; ++r) std::printf(" %zu", off_bal[r + 1] - off_bal[r]);
      std::printf("\nlayout    measured_ms  predicted_ms\n");
      std::printf("even      %11.2f  %12.2f\n", median(te) * 1e3, pe * 1e3);
      std::printf("balanced  %11.2f  %12.2f\n", median(tb) * 1e3, pb * 1e3);
      std::printf("gain even/balanced: measured %.3f (median of per-round ratios; rounds:", median(ratio));
      for (double v : ratio) std::printf(" %.3f", v);
      std::printf("), predicted %.3f\n", pe / pb);
    }
  }
  MPI_Finalize();
  return rc;
}
