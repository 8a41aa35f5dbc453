#include "p2p.hpp"

#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdio>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include <gradwire/codec.hpp>
#include <gradwire/communicator.hpp>

#include "args.hpp"
#include "buffers.hpp"
#include "math/element_io.hpp"
#include "mpi_main.hpp"
#include "report.hpp"
#include "timing.hpp"

namespace gwbench {
namespace {

using gradwire::DType;

double input(int rank, std::size_t i) { return static_cast<double>((rank * 7 + i * 13) % 17) - 8; }

constexpr int kTag = 7, kAckTag = 8;

// One direction of gradwire's path: encode (with error feedback when asked), send, receive
// and decode. Holds the message buffers so the timed calls allocate nothing.
class Channel {
 public:
  Channel(const CodecChoice& c, std::size_t count, DType t, int window)
      : dense_(c.spec == "none"), count_(count), t_(t) {
    if (!dense_) {
      codec_ = std::make_unique<gradwire::Codec>(gradwire::parse_codec(c.spec));
      cap_ = codec_->max_encoded_bytes(count);
      msgs_.assign(static_cast<std::size_t>(window), std::vector<std::byte>(cap_));
      lens_.assign(static_cast<std::size_t>(window), 0);
      if (c.ef) residual_.assign(count, 0.0f);
    }
  }
  bool dense() const { return dense_; }
  std::size_t bytes() const { return count_ * gradwire::dtype_size(t_); }
  std::size_t last_wire(int k) const { return dense_ ? bytes() : lens_[static_cast<std::size_t>(k)]; }

  // Encodes `in` into message slot k; returns its length.
  std::size_t encode(const void* in, int k) {
    lens_[k] = codec_->encode(in, t_, count_, 0, 1234, step_++, msgs_[k].data(), cap_,
                              residual_.empty() ? nullptr : residual_.data());
    return lens_[k];
  }
  void* msg(int k) { return msgs_[k].data(); }
  std::size_t cap() const { return cap_; }
  void decode(int k, std::size_t len, void* out) {
    codec_->decode(msgs_[k].data(), len, out, t_, count_);
  }

  void send(const void* buf, int peer, MPI_Comm comm) {
    if (dense_) {
      MPI_Send(buf, static_cast<int>(bytes()), MPI_BYTE, peer, kTag, comm);
    } else {
      const std::size_t n = encode(buf, 0);
      MPI_Send(msg(0), static_cast<int>(n), MPI_BYTE, peer, kTag, comm);
    }
  }
  void recv(void* buf, int peer, MPI_Comm comm) {
    if (dense_) {
      MPI_Recv(buf, static_cast<int>(bytes()), MPI_BYTE, peer, kTag, comm, MPI_STATUS_IGNORE);
    } else {
      MPI_Status st;
      MPI_Recv(msg(0), static_cast<int>(cap_), MPI_BYTE, peer, kTag, comm, &st);
      int n = 0;
      MPI_Get_count(&st, MPI_BYTE, &n);
      decode(0, static_cast<std::size_t>(n), buf);
    }
  }

 private:
  bool dense_;
  std::size_t count_;
  DType t_;
  std::unique_ptr<gradwire::Codec> codec_;
  std::size_t cap_ = 0;
  std::vector<std::vector<std::byte>> msgs_;
  std::vector<std::size_t> lens_;
  std::vector<float> residual_;
  std::uint64_t step_ = 0;
};

std::string fmt_err(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.2e", v);
  return b;
}

int run(int argc, char** argv, P2P kind, int rank, int P) {
  const char* name = kind == P2P::Latency ? "gw_latency" : "gw_bw";
  const Args args = parse(argc, argv, name, rank);
  const std::vector<CodecChoice> choices = codec_choices(args);
  std::string bad;
  for (const CodecChoice& c : choices) {
    bad = codec_spec_error(c);
    if (!bad.empty()) break;
  }
  if (!bad.empty()) {
    if (rank == 0) std::fprintf(stderr, "%s: %s\n", name, bad.c_str());
    return 2;
  }
  if (args.device == "cuda") {
    if (rank == 0)
      std::fprintf(stderr, "%s: skipped: -d cuda: the point-to-point benchmarks run on host memory "
                           "(gradwire has no device point-to-point path)\n", name);
    return kSkip;
  }

  gradwire::Options o;
  o.timeout_s = args.timeout_s;
  gradwire::Communicator comm(MPI_COMM_WORLD, o);
  Engine engine(MPI_COMM_WORLD, "mpi", false);
  Watchdog wd(name, args.timeout_s, rank);
  // Rank 0 sends (and, for latency, receives the echo); rank 1 receives. Alone, rank 0 is both.
  const int receiver = P > 1 ? 1 : 0;
  const int peer = rank == 0 ? receiver : 0;
  const bool active = rank < 2;
  // Timing and barriers among the active pair only.
  MPI_Comm pair;
  MPI_Comm_split(MPI_COMM_WORLD, active ? 0 : MPI_UNDEFINED, rank, &pair);

  Header h;
  h.benchmark = name;
  h.backend = "mpi";
  h.memory = "host";
  for (std::size_t i = 0; i < choices.size(); ++i) h.codec += (i ? ", " : "") + choices[i].label;
  if (!args.codecs.empty()) h.codec += std::string("   EF: ") + (args.ef ? "on" : "off");
  h.baseline = kind == P2P::Latency ? "MPI_Send/MPI_Recv ping-pong" : "MPI_Isend/MPI_Irecv window";
  h.size_note = kind == P2P::Latency
                    ? "bytes of one message; latency is half a round trip, encode and decode included"
                    : "bytes of one message; " + std::to_string(args.window) +
                          " in flight per window, then an ack (OSU); encode and decode included";
  if (P > 2) h.size_note += "; ranks 2.." + std::to_string(P - 1) + " idle";
  if (P == 1) h.size_note += "; one rank: it talks to itself";
  h.uses_op = false;
  h.bandwidth = kind == P2P::Bandwidth;
  h.ranks = P;
  h.nodes = comm.node_count();
  h.rendezvous_s = comm.rendezvous_seconds();
  Report report(args, h, rank);
  report.begin();

  const DType t = args.dtype;
  const std::size_t esz = gradwire::dtype_size(t);
  const std::size_t maxc = args.max_bytes / esz;
  std::vector<unsigned char> mine(maxc * esz);
  for (std::size_t i = 0; i < maxc; ++i) gradwire::math::put_element(mine.data(), t, i, input(rank, i));
  const int W = kind == P2P::Bandwidth ? args.window : 1;
  // Receive slots: a window of them for gw_bw (OSU receives each message into its own buffer).
  std::vector<std::vector<unsigned char>> rbuf(static_cast<std::size_t>(W), std::vector<unsigned char>(maxc * esz + 64));
  int failed = 0;

  for (std::size_t bytes = args.min_bytes; bytes <= args.max_bytes; bytes *= 2) {
    const std::size_t count = bytes / esz;
    if (count == 0) continue;
    if (bytes > static_cast<std::size_t>(INT_MAX)) break;
    const int iters = args.iterations >= 0 ? args.iterations : default_iterations(bytes);
    const int warm = args.warmup >= 0 ? args.warmup : default_warmup(bytes);
    const MPI_Comm bc = engine.comm(), gc = comm.mpi_comm();

    // Baseline: raw bytes.
    auto base_round = [&] {
      if (kind == P2P::Latency) {
        if (P == 1) {
          for (int leg = 0; leg < 2; ++leg)
            MPI_Sendrecv(mine.data(), static_cast<int>(bytes), MPI_BYTE, 0, kTag, rbuf[0].data(),
                         static_cast<int>(bytes), MPI_BYTE, 0, kTag, bc, MPI_STATUS_IGNORE);
        } else if (rank == 0) {
          MPI_Send(mine.data(), static_cast<int>(bytes), MPI_BYTE, peer, kTag, bc);
          MPI_Recv(rbuf[0].data(), static_cast<int>(bytes), MPI_BYTE, peer, kTag, bc, MPI_STATUS_IGNORE);
        } else {
          MPI_Recv(rbuf[0].data(), static_cast<int>(bytes), MPI_BYTE, peer, kTag, bc, MPI_STATUS_IGNORE);
          MPI_Send(mine.data(), static_cast<int>(bytes), MPI_BYTE, peer, kTag, bc);
        }
      } else {
        std::vector<MPI_Request> rq(static_cast<std::size_t>(2 * W));
        int n = 0;
        if (rank == 0) {
          for (int k = 0; k < W; ++k)
            MPI_Isend(mine.data(), static_cast<int>(bytes), MPI_BYTE, peer, kTag, bc, &rq[n++]);
        }
        if (rank == receiver) {
          for (int k = 0; k < W; ++k)
            MPI_Irecv(rbuf[k].data(), static_cast<int>(bytes), MPI_BYTE, 0, kTag, bc, &rq[n++]);
        }
        MPI_Waitall(n, rq.data(), MPI_STATUSES_IGNORE);
        int ack = 0;
        if (P == 1) return;
        if (rank == 0) MPI_Recv(&ack, 1, MPI_INT, peer, kAckTag, bc, MPI_STATUS_IGNORE);
        else MPI_Send(&ack, 1, MPI_INT, 0, kAckTag, bc);
      }
    };

    Timing b{};
    std::vector<std::unique_ptr<Channel>> chans;
    for (const CodecChoice& c : choices) chans.push_back(std::make_unique<Channel>(c, count, t, W));

    // gradwire's path for choice k.
    auto gw_round = [&](Channel& ch) {
      if (kind == P2P::Latency) {
        if (P == 1) {
          // To itself: both legs of the round trip.
          for (int leg = 0; leg < 2; ++leg) {
            if (ch.dense()) {
              MPI_Sendrecv(mine.data(), static_cast<int>(bytes), MPI_BYTE, 0, kTag, rbuf[0].data(),
                           static_cast<int>(bytes), MPI_BYTE, 0, kTag, gc, MPI_STATUS_IGNORE);
            } else {
              const std::size_t n = ch.encode(mine.data(), 0);
              ch.decode(0, n, rbuf[0].data());
            }
          }
        } else if (rank == 0) {
          ch.send(mine.data(), peer, gc);
          ch.recv(rbuf[0].data(), peer, gc);
        } else {
          ch.recv(rbuf[0].data(), peer, gc);
          ch.send(rbuf[0].data(), peer, gc);
        }
      } else {
        std::vector<MPI_Request> rq(static_cast<std::size_t>(2 * W));
        int n = 0;
        if (ch.dense()) {
          if (rank == 0)
            for (int k = 0; k < W; ++k)
              MPI_Isend(mine.data(), static_cast<int>(bytes), MPI_BYTE, peer, kTag, gc, &rq[n++]);
          if (rank == receiver)
            for (int k = 0; k < W; ++k)
              MPI_Irecv(rbuf[k].data(), static_cast<int>(bytes), MPI_BYTE, 0, kTag, gc, &rq[n++]);
          MPI_Waitall(n, rq.data(), MPI_STATUSES_IGNORE);
        } else {
          // One rank alone encodes into the slots and decodes them back.
          std::vector<MPI_Status> st(static_cast<std::size_t>(2 * W));
          if (rank == receiver && P > 1)
            for (int k = 0; k < W; ++k)
              MPI_Irecv(ch.msg(k), static_cast<int>(ch.cap()), MPI_BYTE, 0, kTag, gc, &rq[n++]);
          if (rank == 0) {
            for (int k = 0; k < W; ++k) {
              const std::size_t len = ch.encode(mine.data(), k);
              if (P > 1) MPI_Isend(ch.msg(k), static_cast<int>(len), MPI_BYTE, peer, kTag, gc, &rq[n++]);
            }
          }
          MPI_Waitall(n, rq.data(), st.data());
          if (rank == receiver) {
            for (int k = 0; k < W; ++k) {
              int len = static_cast<int>(ch.last_wire(k));
              if (P > 1) MPI_Get_count(&st[k], MPI_BYTE, &len);
              ch.decode(k, static_cast<std::size_t>(len), rbuf[k].data());
            }
          }
        }
        int ack = 0;
        if (P == 1) return;
        if (rank == 0) MPI_Recv(&ack, 1, MPI_INT, peer, kAckTag, gc, MPI_STATUS_IGNORE);
        else MPI_Send(&ack, 1, MPI_INT, 0, kAckTag, gc);
      }
    };

    std::vector<Timing> g1(choices.size()), g2(choices.size());
    Timing b1{}, b2{};
    if (active) {
      wd.arm(h.baseline + " of " + std::to_string(bytes) + " B");
      b1 = time_calls(pair, args.blocking, warm, iters / 2, base_round);
      for (std::size_t k = 0; k < choices.size(); ++k)
        g1[k] = time_calls(pair, args.blocking, warm, iters / 2, [&] { gw_round(*chans[k]); });
      b2 = time_calls(pair, args.blocking, 0, iters - iters / 2, base_round);
      for (std::size_t k = choices.size(); k-- > 0;)
        g2[k] = time_calls(pair, args.blocking, 0, iters - iters / 2, [&] { gw_round(*chans[k]); });
      wd.disarm();
    }
    b = merge(b1, b2);
    // Per message: a round trip is two messages; a window is W.
    const double per = kind == P2P::Latency ? 2.0 : static_cast<double>(W);

    for (std::size_t k = 0; k < choices.size(); ++k) {
      Timing g = merge(g1[k], g2[k]);
      Row row;
      row.bytes = bytes;
      row.avg_us = g.avg_us / per;
      row.min_us = g.min_us / per;
      row.max_us = g.max_us / per;
      row.iterations = g.iterations;
      row.set_spread(spread(g.times_us, per));
      row.base_us = b.avg_us / per;
      row.algbw = row.avg_us > 0 ? static_cast<double>(bytes) / (row.avg_us * 1e3) : 0;
      row.busbw = row.algbw;
      row.codec = choices[k].label;
      row.algorithm = chans[k]->dense() ? "raw" : "encoded";
      std::size_t wire = chans[k]->dense() ? bytes : 0;
      if (!chans[k]->dense() && active) {
        wire = chans[k]->encode(mine.data(), 0);
      }
      row.wire = wire;
      if (args.validate) {
        // One message from rank 0 (raw or encoded, fresh residual) checked by its receiver.
        double rel = 0;
        bool ok = true;
        if (active) {
          Channel ch(choices[k], count, t, 1);
          std::vector<unsigned char> got(count * esz + 64);
          if (P == 1) {
            if (ch.dense()) std::copy(mine.begin(), mine.begin() + static_cast<std::ptrdiff_t>(bytes), got.begin());
            else ch.decode(0, ch.encode(mine.data(), 0), got.data());
          } else if (rank == 0) {
            ch.send(mine.data(), peer, gc);
          } else {
            ch.recv(got.data(), 0, gc);
          }
          if (rank == receiver) {
            double mx = 0, ref = 0;
            for (std::size_t i = 0; i < count; ++i) {
              const double want = input(0, i), x = gradwire::math::get_element(got.data(), t, i);
              if (!std::isfinite(x)) ok = false;
              mx = std::max(mx, std::fabs(x - want));
              ref = std::max(ref, std::fabs(want));
            }
            rel = ref > 0 ? mx / ref : mx;
            if (chans[k]->dense() && mx != 0) ok = false;
          }
        }
        int okv = ok ? 1 : 0;
        MPI_Allreduce(MPI_IN_PLACE, &okv, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
        MPI_Allreduce(MPI_IN_PLACE, &rel, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        row.max_rel_err = rel;
        row.validation = chans[k]->dense() ? (okv ? "Pass" : "Fail") : (okv ? fmt_err(rel) : "Fail");
        failed |= !okv;
      }
      report.row(row);
    }
  }
  report.end();
  if (pair != MPI_COMM_NULL) MPI_Comm_free(&pair);
  return failed;
}

}  // namespace

int run_p2p(int argc, char** argv, P2P kind) {
  return mpi_main(argc, argv, kind == P2P::Latency ? "gw_latency" : "gw_bw",
                  [&](int rank, int size) { return run(argc, argv, kind, rank, size); });
}

}  // namespace gwbench
