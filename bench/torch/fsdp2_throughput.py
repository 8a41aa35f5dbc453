"""Training throughput of an FSDP2 (fully_shard) model: FSDP's default reduce-scatter against
gradwire's compressed one (gradwire.torch.fsdp.compress), one launch, the same model, data,
batch and seed for every row; warm-up steps excluded.

    mpirun -np 4 python bench/torch/fsdp2_throughput.py [--dim 1024 --layers 6 ...]
    bench/link/emulated_link.sh --rate 1gbit --np 4 -- -x MASTER_ADDR -x GLOO_SOCKET_IFNAME \
        python bench/torch/fsdp2_throughput.py

Rows: "compute only" (the same model unsharded, each rank on its own: the step with no
communication), FSDP's default reduce-scatter (gloo), then one row per gradwire codec. Per row:
median and p95 step time (the slowest rank's, per step), the median time inside the
reduce-scatter calls per step (the slowest rank's), samples/s over all ranks, and the
reduce-scatter bytes each rank sends per step (gradwire: the plans' wire bytes; default:
(P-1)/P of the float32 input). FSDP's parameter all-gathers stay dense in every row; with
--reshard-after-forward they run twice per step instead of once.
"""
import argparse
import json
import os
import statistics
import time

# Inside emulated_link.sh's namespace lo is the only interface: gloo's rendezvous and sockets
# must use it (the host name's address is not there).
os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.distributed.fsdp import FSDPModule, fully_shard  # noqa: E402
from torch.distributed.fsdp._fully_shard._fsdp_api import ReduceScatter  # noqa: E402
from torch.distributed.fsdp._fully_shard._fsdp_collectives import \
    DefaultReduceScatter  # noqa: E402

import gradwire.torch as gwt  # noqa: E402
from gradwire.torch import fsdp as gw_fsdp  # noqa: E402


class Block(nn.Module):
    """A transformer block's feed-forward half (pre-norm, 4x expansion, residual)."""

    def __init__(self, dim):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.up = nn.Linear(dim, 4 * dim)
        self.down = nn.Linear(4 * dim, dim)

    def forward(self, x):
        return x + self.down(F.gelu(self.up(self.norm(x))))


class TimedReduceScatter(ReduceScatter):
    """Another reduce-scatter object, its calls' wall time added up (the same for every row)."""

    def __init__(self, inner):
        self.inner = inner
        self.seconds = 0.0

    def allocate(self, size, *, dtype, device):
        return self.inner.allocate(size, dtype=dtype, device=device)

    def __call__(self, output_tensor, input_tensor, group, op, async_op=False):
        t0 = time.perf_counter()
        work = self.inner(output_tensor=output_tensor, input_tensor=input_tensor, group=group,
                          op=op, async_op=async_op)
        self.seconds += time.perf_counter() - t0
        return work


def time_reduce_scatters(model, handle):
    """Wraps every FSDP group's reduce-scatter (gradwire's or the default) in a timer."""
    timers = []
    for name, m in model.named_modules():
        if isinstance(m, FSDPModule) and m._get_fsdp_state()._fsdp_param_groups:
            inner = handle.comms[name] if handle is not None else DefaultReduceScatter()
            timers.append(TimedReduceScatter(inner))
            m.set_custom_reduce_scatter(timers[-1])
    return timers


def make_model(args):
    torch.manual_seed(args.seed)
    return nn.Sequential(nn.Linear(args.features, args.dim),
                         *[Block(args.dim) for _ in range(args.layers)],
                         nn.Linear(args.dim, args.classes))


def shard(model, args):
    for m in model:
        fully_shard(m, reshard_after_forward=args.reshard_after_forward)
    fully_shard(model, reshard_after_forward=args.reshard_after_forward)
    return model


def data(args, rank):
    g = torch.Generator().manual_seed(args.seed * 1000 + rank)
    x = torch.randn(args.batch, args.features, generator=g)
    return x, torch.randint(0, args.classes, (args.batch,), generator=g)


def run_row(args, world, mode):
    """Per-step times of one row (the slowest rank's), and its reduce-scatter bytes per rank."""
    model = make_model(args)
    handle = None
    if mode != "compute":
        shard(model, args)
    if mode not in ("compute", "default"):
        handle = gw_fsdp.compress(model, codec=mode, seed=args.seed)
    timers = time_reduce_scatters(model, handle) if mode != "compute" else []
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x, y = data(args, world.rank)
    times, rs_times = [], []
    for step in range(args.warmup + args.steps):
        dist.barrier()
        for t in timers:
            t.seconds = 0.0
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        if step >= args.warmup:
            times.append(time.perf_counter() - t0)
            rs_times.append(sum(t.seconds for t in timers))
    slowest = torch.tensor([times, rs_times], dtype=torch.float64)
    dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
    rs_bytes = 0
    algorithms = ""
    if handle is not None:
        stats = handle.stats()
        rs_bytes = sum(s["wire_bytes"] for s in stats)
        algorithms = ",".join(handle.algorithms())
        # Where the last step's reduce-scatter time went (this rank's plans, summed).
        parts = {k: sum(s[k] for s in stats) for k in ("encode_s", "transfer_s", "decode_s",
                                                       "total_s")}
        print(f"# rank {world.rank} {mode}: last step's plans: "
              + ", ".join(f"{k} {v:.3f}" for k, v in parts.items()), flush=True)
        handle.close()
    elif mode == "default":
        # The least a reduce-scatter of the float32 input sends: the other ranks' blocks
        # (gloo's own algorithm may send more).
        params = sum(p.numel() for p in model.parameters())  # padding ignored (small)
        rs_bytes = 4 * params * (world.size - 1) // world.size
        algorithms = "gloo reduce_scatter"
    del model, opt
    return slowest[0].tolist(), slowest[1].tolist(), rs_bytes, algorithms


def p95(values):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--features", type=int, default=256)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--batch", type=int, default=32, help="samples per rank per step")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--codecs", default="q8,q4", help="gradwire rows, comma-separated")
    ap.add_argument("--reshard-after-forward", action="store_true",
                    help="FSDP re-gathers parameters in backward (two all-gathers per step)")
    ap.add_argument("--out", help="a JSON file for the rows (rank 0 writes it)")
    args = ap.parse_args()

    torch.set_num_threads(1)
    world = gwt.init(backend="gloo")
    rows = []
    for mode in ["compute", "default"] + args.codecs.split(","):
        times, rs_times, rs_bytes, algorithms = run_row(args, world, mode)
        med = statistics.median(times)
        rows.append(dict(row=mode, algorithm=algorithms, median_s=med, p95_s=p95(times),
                         reduce_scatter_median_s=statistics.median(rs_times),
                         samples_per_s=args.batch * world.size / med,
                         rs_bytes_per_rank=rs_bytes))
    if world.rank == 0:
        params = sum(p.numel() for p in make_model(args).parameters())
        default = next(r for r in rows if r["row"] == "default")
        print(f"# FSDP2 throughput: {world.size} ranks, {params / 1e6:.1f} M parameters, "
              f"batch {args.batch}/rank, {args.steps} steps after {args.warmup} warm-up, "
              f"reshard_after_forward={args.reshard_after_forward}, torch {torch.__version__}")
        print("| row | reduce-scatter | median step (s) | p95 step (s) | of it reduce-scatter "
              "(s) | samples/s | x default | RS bytes/rank/step |")
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            ratio = r["samples_per_s"] / default["samples_per_s"]
            print(f"| {r['row']} | {r['algorithm'] or '-'} | {r['median_s']:.3f} | "
                  f"{r['p95_s']:.3f} | {r['reduce_scatter_median_s']:.3f} | "
                  f"{r['samples_per_s']:.1f} | {ratio:.2f} | "
                  f"{r['rs_bytes_per_rank']:,} |")
        if args.out:
            with open(args.out, "w") as f:
                json.dump(dict(args=vars(args), world_size=world.size, parameters=params,
                               torch=torch.__version__, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
