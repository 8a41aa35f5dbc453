"""Time to accuracy on Fashion-MNIST at 4 ranks: each row of bench/torch/ddp_rows.py trains
examples/torch/train_fashion_mnist.py's CNN (its data, optimizer and batch) for the same
number of steps from the same seed; every --eval-every steps the clock stops and rank 0 tests
on the 10 000 test images. The target of a seed is the accuracy DDP's default allreduce has
after its last step; a row's time to accuracy is its training wall time (data loading, forward,
backward, reduction, optimizer; no evaluation) at its first test at or above the target.

    mpirun -np 4 python bench/torch/time_to_accuracy.py --out FILE.json [--seeds 1,2,3]
           [--steps 120] [--eval-every 10] [--rows ...]

The JSON (rank 0, rewritten after every seed) holds each row's curve (seconds, step,
accuracy) and the algorithm that ran."""
import argparse
import json
import os
import sys
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "examples", "torch"))
import ddp_rows  # noqa: E402
import train_fashion_mnist as fm  # noqa: E402

import gradwire.torch as gwt  # noqa: E402

ROWS = "ddp-allreduce,torch-fp16,torch-powersgd-r4,gw-q8,gw-q4,gw-topk-dgc,gw-powersgd-r4,gw-auto"
# DGC warms its density up (25 % -> 1 %) over its first 60 steps, as in
# bench/torch/fashion_mnist_accuracy.py; the throughput rows measure its steady state.
EXTRA = {"gw-topk-dgc": {"warmup_steps": 60}}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--rows", default=ROWS)
    p.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    return p.parse_args()


def train(row, seed, args, data, rank, size):
    defaults = fm.parse_args([])
    train_set, test = data
    torch.manual_seed(seed)
    model = DistributedDataParallel(fm.Net(), **ddp_rows.ddp_options(row))
    hook = ddp_rows.attach(row, model, EXTRA.get(row))
    opt = torch.optim.SGD(model.parameters(), lr=defaults.lr,
                          momentum=ddp_rows.optimizer_momentum(row, defaults.momentum))
    sampler = DistributedSampler(train_set, num_replicas=size, rank=rank, seed=seed)
    loader = iter(DataLoader(train_set, batch_size=defaults.batch_size, sampler=sampler))
    curve, clock = [], 0.0
    dist.barrier()
    for step in range(1, args.steps + 1):
        t0 = time.perf_counter()
        x, y = next(loader)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        clock += time.perf_counter() - t0
        if step % args.eval_every == 0 or step == args.steps:
            if rank == 0:  # every rank holds the same model
                with torch.no_grad():
                    x, y = test.tensors
                    acc = (model.module(x).argmax(1) == y).float().mean().item() * 100
                curve.append((clock, step, acc))
            dist.barrier()  # the others wait, off the clock
    if ddp_rows.ROWS[row][0] == "gradwire":
        ran = ",".join(hook.algorithms())
        hook.close()
    else:
        ran = row
    return {"curve": curve, "algorithm": ran, "load": os.getloadavg()}


def main():
    args = parse_args()
    torch.set_num_threads(1)
    gwt.init()
    rank, size = dist.get_rank(), dist.get_world_size()
    data = (fm.load(args.data_dir, "train"), fm.load(args.data_dir, "test"))
    result = {"torch": torch.__version__, "ranks": size, "steps": args.steps,
              "eval_every": args.eval_every, "batch_per_rank": fm.parse_args([]).batch_size,
              "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
              "load_start": os.getloadavg(), "seeds": {}}
    for seed in (int(s) for s in args.seeds.split(",")):
        rows = {}
        for row in args.rows.split(","):
            rows[row] = train(row, seed, args, data, rank, size)
            if rank == 0:
                last = rows[row]["curve"][-1]
                print(f"seed {seed} {row} ran {rows[row]['algorithm']} final accuracy "
                      f"{last[2]:.2f} after {last[0]:.1f} s ({last[1]} steps) "
                      f"load {rows[row]['load'][0]:.1f}", flush=True)
        result["seeds"][seed] = rows
        result["load_end"] = os.getloadavg()
        if rank == 0:
            with open(args.out, "w") as f:
                json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
