"""Training throughput of DDP at 4 ranks: PyTorch's own reductions (default allreduce on gloo,
fp16_compress_hook, PowerSGD) beside gradwire's hook (bench/torch/ddp_rows.py), every row on
the same model, data, batch and seed, in one launch. Per model it first times the same step
with no communication (the bare module, every rank at once, so the cores are shared as in the
other rows).

    mpirun -np 4 python bench/torch/ddp_throughput.py --out FILE.json [--models transformer,cnn]
           [--rows a,b,...] [--warmup 3] [--steps 12]

Prints one line per row and writes FILE.json (rank 0): the link check, then per model and row
the step times, samples/s, bytes per step and (gradwire) the algorithms the plans ran."""
import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "examples", "torch"))
import ddp_rows  # noqa: E402
import train_fashion_mnist  # noqa: E402
import transformer_model  # noqa: E402

import gradwire  # noqa: E402
import gradwire.torch as gwt  # noqa: E402


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--models", default="transformer,cnn")
    p.add_argument("--rows", default=",".join(ddp_rows.ROWS))
    p.add_argument("--warmup", type=int, default=3,
                   help="untimed steps per row (DDP rebuilds its buckets after the first; "
                        "the hooks plan or start PowerSGD from the second or third)")
    p.add_argument("--steps", type=int, default=12, help="timed steps per row")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--tokens", default="4x32",
                   help="transformer batch per rank: sequences x tokens")
    p.add_argument("--cnn-batch", type=int, default=64, help="Fashion-MNIST batch per rank")
    p.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    return p.parse_args()


class Workload:
    """A model's constructor, its per-rank batches (the same for every row) and its loss."""

    def __init__(self, name, args, rank, count):
        self.name = name
        if name == "transformer":
            seqs, tokens = (int(v) for v in args.tokens.split("x"))
            self.make = transformer_model.TransformerStack
            self.data = transformer_model.batches(seqs, tokens, args.seed * 1000 + rank, count)
            self.samples = seqs  # sequences per rank per step
            self.batch = f"{seqs} sequences x {tokens} tokens"
            self.lr = 0.01
        else:
            train = train_fashion_mnist.load(args.data_dir, "train")
            g = torch.Generator().manual_seed(args.seed * 1000 + rank)
            idx = torch.randint(0, len(train), (count, args.cnn_batch), generator=g)
            self.make = train_fashion_mnist.Net
            self.data = [train[i] for i in idx]  # TensorDataset indexing: (x, y) batches
            self.samples = args.cnn_batch
            self.batch = f"{args.cnn_batch} images"
            self.lr = train_fashion_mnist.parse_args([]).lr
        self.momentum = 0.9


def lo_tx_bytes():
    """Bytes sent on this network namespace's loopback (the emulated link carries every
    rank's TCP: gloo's and, there, MPI's)."""
    try:
        with open("/sys/class/net/lo/statistics/tx_bytes") as f:
            return int(f.read())
    except OSError:
        return 0


def timed_steps(model, optimizer, work, warmup, steps):
    times = []
    for i in range(warmup + steps):
        x, y = work.data[i % len(work.data)]
        if i == warmup:
            dist.barrier()
            tx0 = lo_tx_bytes()
        t0 = time.perf_counter()
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    dist.barrier()
    return times, lo_tx_bytes() - tx0


def summary(times, samples_per_step):
    s = sorted(times)
    med = statistics.median(s)
    p95 = s[min(len(s) - 1, round(0.95 * (len(s) - 1)))]
    return {"median_s": med, "p95_s": p95, "samples_per_s": samples_per_step / med,
            "step_s": times}


def link_check(world, size):
    """A dense allreduce of 16 MiB float32 through gloo and through gradwire's MPI: with the
    emulated link, both must take about the shaped time (ring: 2(P-1)/P of the bytes per rank,
    P ranks sharing the link)."""
    out = {}
    t = torch.ones(4 << 20)
    for name in ("gloo", "gradwire-mpi"):
        best = None
        for _ in range(2):
            dist.barrier()
            t0 = time.perf_counter()
            if name == "gloo":
                dist.all_reduce(t)
            else:
                world.allreduce(t.data_ptr(), t.data_ptr(), t.numel(), "float32", "sum")
            dt = time.perf_counter() - t0
            best = dt if best is None else min(best, dt)
        out[name] = {"bytes": t.numel() * 4, "seconds": best,
                     "link_gbit_s": 2 * (size - 1) * t.numel() * 4 * 8 / best / 1e9}
    return out


def main():
    args = parse_args()
    torch.set_num_threads(1)  # one core per rank (4 ranks on this 2-core machine: shared)
    world = gwt.init()
    rank, size = dist.get_rank(), dist.get_world_size()
    load0 = os.getloadavg()
    result = {"torch": torch.__version__, "gradwire": gradwire.__file__,
              "python": platform.python_version(), "ranks": size, "backend": dist.get_backend(),
              "warmup": args.warmup, "steps": args.steps, "seed": args.seed,
              "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
              "load_start": load0, "link_check": link_check(world, size), "models": {}}
    if rank == 0:
        print(json.dumps({"link_check": result["link_check"]}), flush=True)
    rows = args.rows.split(",")
    for mname in args.models.split(","):
        work = Workload(mname, args, rank, args.warmup + args.steps)
        torch.manual_seed(args.seed)
        bare = work.make()
        params = [p for p in bare.parameters() if p.requires_grad]
        entry = {"parameters": sum(p.numel() for p in params), "batch_per_rank": work.batch,
                 "samples_per_step": work.samples * size, "rows": {}}
        opt = torch.optim.SGD(bare.parameters(), lr=work.lr, momentum=work.momentum)
        times, _ = timed_steps(bare, opt, work, args.warmup, args.steps)
        entry["compute_only"] = summary(times, work.samples * size)
        if rank == 0:
            print(f"{mname} compute-only median {entry['compute_only']['median_s']:.3f} s "
                  f"(parameters {entry['parameters']})", flush=True)
        del bare, opt
        for row in rows:
            torch.manual_seed(args.seed)
            model = DistributedDataParallel(work.make(), **ddp_rows.ddp_options(row))
            hook = ddp_rows.attach(row, model)
            opt = torch.optim.SGD(model.parameters(), lr=work.lr,
                                  momentum=ddp_rows.optimizer_momentum(row, work.momentum))
            times, tx = timed_steps(model, opt, work, args.warmup, args.steps)
            r = summary(times, work.samples * size)
            gw = ddp_rows.ROWS[row][0] == "gradwire"
            r["wire_bytes_per_step"] = ddp_rows.wire_bytes(row, params, size,
                                                           hook if gw else None)
            r["lo_bytes_per_rank_step"] = tx / size / args.steps
            r["load"] = os.getloadavg()
            if gw:
                stats = hook.stats()
                r["algorithm"] = ",".join(hook.algorithms())
                r["buckets"] = [{k: s.get(k) for k in (
                    "bucket", "algorithm", "compressed_elements", "dense_elements",
                    "logical_bytes", "wire_bytes", "encode_s", "transfer_s", "decode_s",
                    "total_s", "decision", "whole_bucket")} for s in stats]
                hook.close()  # frees the plans (and their residuals) before the next row
            elif isinstance(hook, ddp_rows.psgd.PowerSGDState):
                r["algorithm"] = f"powersgd-hook r{hook.matrix_approximation_rank}"
                r["compression_stats"] = [float(v) for v in hook.compression_stats()]
            else:
                r["algorithm"] = "gloo-allreduce" + ("-fp16" if "fp16" in row else "")
            entry["rows"][row] = r
            if rank == 0:
                print(f"{mname} {row} ran {r['algorithm']} median {r['median_s']:.3f} s "
                      f"p95 {r['p95_s']:.3f} s {r['samples_per_s']:.1f} samples/s "
                      f"wire {r['wire_bytes_per_step'] / 1e6:.2f} MB/step/rank "
                      f"lo {r['lo_bytes_per_rank_step'] / 1e6:.2f} MB load {r['load'][0]:.1f}",
                      flush=True)
            del model, opt, hook
        result["models"][mname] = entry
    result["load_end"] = os.getloadavg()
    if rank == 0:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
