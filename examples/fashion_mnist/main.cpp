// Data-parallel Fashion-MNIST on gradwire: every rank holds the same MLP (same seed, then a
// broadcast from rank 0), trains on its own disjoint shard of each epoch's shuffle, and the
// gradients are averaged through gradwire every step. Prints one line per epoch: train loss,
// test loss and accuracy, bytes on the wire per step, time spent in communication.
//
//   OPENBLAS_NUM_THREADS=1 mpirun -np 4 ./fashion_mnist --codec q4 --epochs 10
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <memory>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <numeric>
#include <string>
#include <vector>

#include <mpi.h>

#include <gradwire/communicator.hpp>

#include "args.hpp"
#include "grad_sync.hpp"
#include "idx.hpp"
#include "mlp.hpp"
#include "sgd.hpp"

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::uint64_t mix(std::uint64_t x) {  // splitmix64
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// The same permutation of [0, n) on every rank for (seed, epoch).
std::vector<std::uint32_t> shuffle(std::size_t n, std::uint64_t seed, int epoch) {
  std::vector<std::uint32_t> p(n);
  std::iota(p.begin(), p.end(), 0u);
  std::uint64_t ctr = mix(seed ^ (0x73687566ull << 32) ^ static_cast<std::uint64_t>(epoch));
  for (std::size_t i = n; i > 1; --i) {
    const std::size_t j = static_cast<std::size_t>(mix(ctr++) % i);
    std::swap(p[i - 1], p[j]);
  }
  return p;
}

// Mean loss and accuracy of rows [0, count) of d, split across ranks; the same on all ranks.
struct Eval { double loss, acc; };
Eval evaluate(gradwire::Communicator& comm, fm::Mlp& model, const fm::Dataset& d,
              std::size_t count, std::size_t chunk) {
  const std::size_t p = static_cast<std::size_t>(comm.size());
  const std::size_t r = static_cast<std::size_t>(comm.rank());
  const std::size_t lo = count * r / p, hi = count * (r + 1) / p;
  double sums[2] = {0, 0};  // loss * rows, correct
  for (std::size_t i = lo; i < hi; i += chunk) {
    const std::size_t rows = std::min(chunk, hi - i);
    std::size_t correct = 0;
    sums[0] += model.forward(d.images.data() + i * d.features, d.labels.data() + i, rows,
                             &correct) * static_cast<double>(rows);
    sums[1] += static_cast<double>(correct);
  }
  comm.allreduce(sums, sums, 2, gradwire::DType::Float64, gradwire::ReduceOp::Sum);
  return {sums[0] / static_cast<double>(count), sums[1] / static_cast<double>(count)};
}

std::uint64_t fingerprint(const float* w, std::size_t n) {
  std::uint64_t h = 0x811c9dc5ull;
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t bits;
    std::memcpy(&bits, &w[i], 4);
    h = mix(h ^ bits);
  }
  return h;
}

// Test hook: FM_KILL_RANK=R FM_KILL_STEP=S makes world rank R die (SIGKILL) at global
// training step S, to exercise --on-failure shrink and respawn (a replacement never does).
bool kill_hook(int world_rank, std::size_t step) {
  const char* r = std::getenv("FM_KILL_RANK");
  const char* s = std::getenv("FM_KILL_STEP");
  return r && s && std::atoi(r) == world_rank &&
         std::strtoull(s, nullptr, 10) == static_cast<unsigned long long>(step);
}

int train(const fm::Args& a, const fm::Dataset& train_set, const fm::Dataset& test_set) {
  gradwire::Options opts;
  opts.on_failure = a.on_failure == "shrink"    ? gradwire::Options::FailurePolicy::Shrink
                    : a.on_failure == "respawn" ? gradwire::Options::FailurePolicy::Respawn
                                                : gradwire::Options::FailurePolicy::Abort;
  // A replacement started by respawn() joins the running job here (same program, same args).
  auto comm_owner = std::make_unique<gradwire::Communicator>(MPI_COMM_WORLD, opts);
  gradwire::Communicator* cp = comm_owner.get();
  const bool joiner = cp->joined();
  int world_rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  int rank = cp->rank(), size = cp->size();
  bool root = rank == 0;

  const std::size_t n_train =
      a.train_subset == 0 ? train_set.count : std::min(a.train_subset, train_set.count);
  const std::size_t n_test =
      a.test_subset == 0 ? test_set.count : std::min(a.test_subset, test_set.count);
  std::size_t global_batch = a.batch * static_cast<std::size_t>(size);
  std::size_t steps = n_train / global_batch;  // the remainder is left out each epoch
  if (steps == 0) {
    if (root) {
      std::fprintf(stderr, "fashion_mnist: %zu training examples make no step of %zu "
                   "(--batch %zu x %d ranks)\n", n_train, global_batch, a.batch, size);
    }
    return 2;
  }

  std::vector<std::size_t> dims = {train_set.features};
  dims.insert(dims.end(), a.hidden.begin(), a.hidden.end());
  dims.push_back(10);
  const std::size_t eval_chunk = 500;
  fm::Mlp model(dims, std::max(a.batch, eval_chunk));
  model.init(a.seed);
  // Same seed gives the same bits already; the broadcast makes it so by construction.
  // (A joiner gets the running job's weights below instead.)
  if (!joiner) cp->broadcast(model.params(), model.param_count(), gradwire::DType::Float32, 0);

  // --plan-momentum: the velocity lives in the plan (DGC), so the optimizer adds none.
  fm::Sgd opt(model.param_count(), a.lr, a.plan_momentum ? 0.0 : a.momentum, a.weight_decay);
  fm::SyncConfig sc;
  sc.codec = a.codec;
  sc.algo = a.algo;
  sc.error_feedback = a.ef;
  sc.seed = a.seed;
  sc.momentum = a.plan_momentum ? static_cast<float>(a.momentum) : 0.0f;
  sc.masking = a.masking;
  sc.clip_norm = static_cast<float>(a.clip);
  sc.warmup_steps = static_cast<std::uint64_t>(a.warmup_epochs * static_cast<double>(steps) + 0.5);
  sc.warmup_density = a.warmup_density;
  sc.powersgd_rank = a.powersgd_rank;
  for (std::size_t l = 0; l + 1 < dims.size(); ++l) {  // per layer: W (in x out), then b
    sc.shapes.push_back({dims[l], dims[l + 1]});
    sc.shapes.push_back({1, dims[l + 1]});
  }
  // The application state a replacement receives: weights, momentum, where training is.
  long long position[2] = {1, 0};  // epoch, step within it
  auto share = [&](gradwire::Communicator& c) {
    c.share_state({{"weights", model.params(), model.param_count(), gradwire::DType::Float32},
                   {"velocity", opt.velocity(), model.param_count(), gradwire::DType::Float32},
                   {"position", position, 2, gradwire::DType::Int64}});
  };
  std::size_t global_step = 0;  // steps taken so far (the kill hook's clock)
  if (joiner) share(*cp);
  auto sync_owner = joiner ? std::make_unique<fm::GradSync>(*cp, model.param_count(), sc, nullptr)
                           : std::make_unique<fm::GradSync>(*cp, model.param_count(), sc);
  fm::GradSync* sp = sync_owner.get();
  // Continue on a new communicator (shrunk, respawned or grown) with its gradient plan.
  auto adopt = [&](std::unique_ptr<gradwire::Communicator> next,
                   std::unique_ptr<fm::GradSync> next_sync) {
    sync_owner = std::move(next_sync);  // the old plan goes before its communicator
    comm_owner = std::move(next);
    cp = comm_owner.get();
    sp = sync_owner.get();
    rank = cp->rank();
    size = cp->size();
    root = rank == 0;
  };
  if (joiner) {
    global_step = static_cast<std::size_t>(cp->resume_step());
    if (root) std::printf("fashion_mnist: joined as rank %d\n", rank);
  }

  if (root && !joiner) {
    std::string arch;
    for (std::size_t d : dims) {
      if (!arch.empty()) arch += '-';
      arch += std::to_string(d);
    }
    std::printf("fashion_mnist: %d ranks, mlp %s (%zu params, %zu B of fp32 gradient), "
                "codec %s, algo %s, ef %s\n",
                size, arch.c_str(), model.param_count(), model.param_count() * 4,
                a.codec.c_str(), a.algo.c_str(), a.ef ? "on" : "off");
    std::printf("fashion_mnist: batch %zu/rank (%zu global), %zu steps/epoch, %d epochs, "
                "lr %g %s, momentum %g, wd %g, seed %llu, train %zu, test %zu; %s\n",
                a.batch, global_batch, steps, a.epochs, a.lr, a.schedule.c_str(), a.momentum,
                a.weight_decay, static_cast<unsigned long long>(a.seed), n_train, n_test,
                gradwire::build_info().c_str());
    std::printf("fashion_mnist: plan momentum %s, masking %s, clip %g, warm-up %llu steps "
                "from density %g, powersgd rank %u\n",
                a.plan_momentum ? "on" : "off", a.masking ? "on" : "off", a.clip,
                static_cast<unsigned long long>(sc.warmup_steps), a.warmup_density,
                a.powersgd_rank);
  }

  // Epoch 0: the untrained model, so that a run shows its loss falling.
  if (!joiner) {
    const Eval tr = evaluate(*cp, model, train_set, std::min<std::size_t>(n_train, 10000),
                             eval_chunk);
    const Eval te = evaluate(*cp, model, test_set, n_test, eval_chunk);
    if (root) {
      std::printf("epoch %3d/%d  train_loss %.4f  test_loss %.4f  test_acc %.4f\n", 0,
                  a.epochs, tr.loss, te.loss, te.acc);
      std::fflush(stdout);
    }
  }

  std::vector<float> xb(a.batch * train_set.features);
  std::vector<std::uint8_t> yb(a.batch);
  Eval last{0, 0};
  double run_comm = 0, run_wire = 0, run_s = 0;
  const int first_epoch = static_cast<int>(position[0]);
  for (int epoch = first_epoch; epoch <= a.epochs; ++epoch) {
    if (epoch == a.grow_at && !joiner) {
      // Scale up at an epoch boundary: the new ranks join with the weights, momentum and
      // place; the shards of this epoch's permutation are cut for the new size.
      const auto g0 = Clock::now();
      const int before = size;
      auto next = std::make_unique<gradwire::Communicator>(cp->grow(a.grow_by, global_step));
      position[0] = epoch;
      position[1] = 0;
      share(*next);
      auto next_sync = std::make_unique<fm::GradSync>(*next, model.param_count(), sc, sp);
      adopt(std::move(next), std::move(next_sync));
      global_batch = a.batch * static_cast<std::size_t>(size);
      steps = n_train / global_batch;
      if (root) {
        std::printf("epoch %3d: grew from %d to %d ranks in %.3f s (spawn, join, state, plan)\n",
                    epoch, before, size, since(g0));
        std::fflush(stdout);
      }
    }
    const auto t0 = Clock::now();
    const std::vector<std::uint32_t> perm = shuffle(n_train, a.seed, epoch);
    // This rank's disjoint block of the epoch's permutation.
    const std::uint32_t* mine = perm.data() + static_cast<std::size_t>(rank) * steps * a.batch;
    double loss_sum = 0, comm_s = 0, wire = 0;
    std::size_t done = 0;  // steps of this epoch on this rank (the mean's denominator)
    for (std::size_t s = epoch == first_epoch ? static_cast<std::size_t>(position[1]) : 0;
         s < steps; ++s) {
      if (!joiner && kill_hook(world_rank, global_step)) std::raise(SIGKILL);
      for (std::size_t i = 0; i < a.batch; ++i) {
        const std::size_t ex = mine[s * a.batch + i];
        std::copy_n(train_set.images.data() + ex * train_set.features, train_set.features,
                    xb.data() + i * train_set.features);
        yb[i] = train_set.labels[ex];
      }
      const double loss = model.forward(xb.data(), yb.data(), a.batch);
      model.backward(xb.data(), yb.data(), a.batch);
      try {
        sp->average(model.grads());
      } catch (const gradwire::Error& e) {
        if (e.code() != gradwire::ErrorCode::PeerFailed) throw;
        // A rank died: go on with the survivors. The gradient plan is rebuilt with its
        // residual, and the rest of the epoch's permutation is re-sharded over the new size
        // from the same point. (A death inside the epoch-end evaluation is not handled.)
        const int before = size;
        const std::size_t old_batch = global_batch;
        if (a.on_failure == "respawn") {
          // Replacements join with the furthest survivor's weights, momentum and place (the
          // lowest rank at the agreed step sends them); the residual stays with the survivors.
          auto next = std::make_unique<gradwire::Communicator>(cp->respawn(global_step));
          position[0] = epoch;
          position[1] = static_cast<long long>(s);
          share(*next);
          auto next_sync = std::make_unique<fm::GradSync>(*next, model.param_count(), sc, sp);
          adopt(std::move(next), std::move(next_sync));
          global_step = static_cast<std::size_t>(cp->resume_step());
          // Back to full size: the same shards; still shrunk (the replacement failed): the
          // examples seen so far re-sharded over the survivors, as under shrink.
          const std::size_t seen = static_cast<std::size_t>(position[1]) * old_batch;
          global_batch = a.batch * static_cast<std::size_t>(size);
          steps = n_train / global_batch;
          s = seen / global_batch;
          mine = perm.data() + static_cast<std::size_t>(rank) * steps * a.batch;
          if (root) {
            std::printf("epoch %3d: %s\nepoch %3d: respawned: %d ranks at step %zu (was %d); "
                        "resuming at step %zu of %zu\n",
                        epoch, e.what(), epoch, size, global_step, before, s, steps);
            std::fflush(stdout);
          }
          --s;
          continue;
        }
        auto next = std::make_unique<gradwire::Communicator>(cp->shrink());
        auto next_sync = std::make_unique<fm::GradSync>(*next, *sp);
        adopt(std::move(next), std::move(next_sync));
        // A step can complete on some ranks and fail on others (the dead rank's message
        // reached some only): those that completed it fail in the next step. Go on from the
        // furthest survivor, with its weights and momentum.
        long long at[2] = {static_cast<long long>(global_step), -static_cast<long long>(global_step)};
        cp->allreduce(at, at, 2, gradwire::DType::Int64, gradwire::ReduceOp::Max);
        const bool behind = static_cast<long long>(global_step) < at[0];
        if (at[0] != -at[1]) {
          int from = behind ? size : rank;
          cp->allreduce(&from, &from, 1, gradwire::DType::Int32, gradwire::ReduceOp::Min);
          cp->broadcast(model.params(), model.param_count(), gradwire::DType::Float32, from);
          cp->broadcast(opt.velocity(), model.param_count(), gradwire::DType::Float32, from);
          global_step = static_cast<std::size_t>(at[0]);
        }
        // Examples of this epoch already used (the same on every survivor).
        const std::size_t seen = (s + (behind ? 1 : 0)) * old_batch;
        global_batch = a.batch * static_cast<std::size_t>(size);
        steps = n_train / global_batch;
        s = seen / global_batch;
        mine = perm.data() + static_cast<std::size_t>(rank) * steps * a.batch;
        if (root) {
          std::printf("epoch %3d: %s\nepoch %3d: shrunk from %d to %d ranks at step %zu "
                      "(rendezvous %.3f s); resuming at step %zu of %zu\n",
                      epoch, e.what(), epoch, before, size, global_step,
                      cp->rendezvous_seconds(), s, steps);
          std::fflush(stdout);
        }
        --s;  // the loop's ++s: redo step s on the new shards
        continue;
      }
      ++done;
      loss_sum += loss;
      comm_s += sp->seconds();
      wire += static_cast<double>(sp->wire_bytes());
      const double progress = (static_cast<double>(epoch - 1) +
                               static_cast<double>(s) / static_cast<double>(steps)) /
                              static_cast<double>(a.epochs);
      ++global_step;
      const double lr = fm::scheduled_lr(a.schedule, a.lr, progress);
      opt.step(model.params(), model.grads(), lr);
    }
    const double train_s = since(t0);
    // Means over ranks: train loss, seconds in gradwire, bytes sent per step.
    const double nd = static_cast<double>(std::max<std::size_t>(done, 1));
    double m[4] = {loss_sum / nd, comm_s, wire / nd, train_s};
    cp->allreduce(m, m, 4, gradwire::DType::Float64, gradwire::ReduceOp::Avg);
    last = evaluate(*cp, model, test_set, n_test, eval_chunk);
    run_comm += m[1];
    run_wire += m[2];
    run_s += m[3];
    if (root) {
      std::printf("epoch %3d/%d  train_loss %.4f  test_loss %.4f  test_acc %.4f  "
                  "wire_B/step %.0f  comm_s %.2f (%.2f ms/step)  train_s %.1f  [%s]\n",
                  epoch, a.epochs, m[0], last.loss, last.acc, m[2], m[1],
                  m[1] / nd * 1e3, m[3], sp->algorithm().c_str());
      std::fflush(stdout);
    }
  }

  // Every rank must hold the same weights: the averaged gradient is identical everywhere.
  const std::uint64_t fp = fingerprint(model.params(), model.param_count());
  std::uint64_t lo = fp, hi = fp;
  MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UINT64_T, MPI_MIN, cp->mpi_comm());
  MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UINT64_T, MPI_MAX, cp->mpi_comm());
  const bool same = lo == hi;
  if (root) {
    std::printf("RESULT codec=%s algo=%s alg_used=%s ef=%s ranks=%d epochs=%d test_acc=%.4f "
                "test_loss=%.4f wire_B_per_step=%.0f comm_s=%.2f train_s=%.1f "
                "weights_identical=%s\n",
                a.codec.c_str(), a.algo.c_str(), sp->algorithm().c_str(), a.ef ? "on" : "off",
                size, a.epochs, last.acc, last.loss, run_wire / a.epochs, run_comm, run_s,
                same ? "yes" : "no");
    if (!same) std::fprintf(stderr, "fashion_mnist: ranks ended with different weights\n");
  }
  return same ? 0 : 3;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  int status = 0;

  fm::Args args;
  try {
    if (!fm::parse_args(argc, argv, args)) {
      if (rank == 0) std::printf("%s", fm::usage().c_str());
      MPI_Finalize();
      return 0;
    }
  } catch (const std::exception& e) {
    if (rank == 0) std::fprintf(stderr, "fashion_mnist: %s\n%s", e.what(), fm::usage().c_str());
    MPI_Finalize();
    return 2;
  }

  // Every rank reads the files; the lowest rank that fails says why, and all exit.
  const std::string dir = args.data_dir.empty() ? fm::kDefaultDataDir : args.data_dir;
  fm::Dataset train_set, test_set;
  std::string error;
  try {
    train_set = fm::load_split(dir, "train");
    test_set = fm::load_split(dir, "t10k");
  } catch (const std::exception& e) {
    error = e.what();
  }
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  int first_bad = error.empty() ? size : rank;
  MPI_Allreduce(MPI_IN_PLACE, &first_bad, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (first_bad < size) {
    if (rank == first_bad) {
      std::fprintf(stderr, "fashion_mnist: rank %d: cannot load Fashion-MNIST: %s\n", rank,
                   error.c_str());
    }
    MPI_Finalize();
    return 1;
  }

  try {
    status = train(args, train_set, test_set);
  } catch (const std::exception& e) {  // gradwire::Error included
    std::fprintf(stderr, "fashion_mnist: rank %d: %s\n", rank, e.what());
    MPI_Abort(MPI_COMM_WORLD, 2);  // peers may be waiting in a collective
  }
  MPI_Finalize();
  return status;
}
