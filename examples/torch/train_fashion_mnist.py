"""A plain PyTorch DDP training script (a small CNN on Fashion-MNIST), launched by mpirun:

    mpirun -np 4 python train_fashion_mnist.py                      # DDP's default allreduce
    mpirun -np 4 python train_fashion_mnist.py --gradwire codec=q8   # through gradwire

It switches to gradwire with the two lines marked "gradwire" below and nothing else;
--gradwire passes register()'s options (key=value,...). Without it the script is what a
PyTorch user already has: init_process_group from mpirun's environment, DistributedSampler,
an optimizer loop, evaluation on the test set.
"""
import argparse
import gzip
import os
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist",
                   help="Debian's dataset-fashion-mnist package puts the files here")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64, help="per rank")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--lr-schedule", choices=["cosine", "constant"], default="cosine",
                   help="cosine: the learning rate falls to 0 over the run, per step")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=0, help="stop each epoch after this many")
    p.add_argument("--gradwire", default=None,
                   help="register gradwire's hook with these options, e.g. codec=q8 or "
                        "codec=none,algorithm=powersgd,powersgd_rank=4")
    return p.parse_args(argv)


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load(data_dir, split):
    prefix = "train" if split == "train" else "t10k"
    try:
        images = read_idx(os.path.join(data_dir, f"{prefix}-images-idx3-ubyte.gz"))
        labels = read_idx(os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte.gz"))
    except FileNotFoundError as e:
        raise SystemExit(f"{e}: install Debian's dataset-fashion-mnist or pass --data-dir")
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    x = (x - 0.2860) / 0.3530  # the training set's mean and deviation
    return TensorDataset(x, torch.from_numpy(labels.astype(np.int64)))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = nn.Linear(32 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def options(text):
    out = {}
    for item in filter(None, (text or "").split(",")):
        key, _, value = item.partition("=")
        for cast in (int, float):
            try:
                value = cast(value)
                break
            except ValueError:
                pass
        out[key] = value
    return out


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(1)  # one core per rank
    rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", 0))
    size = int(os.environ.get("OMPI_COMM_WORLD_SIZE", 1))
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29512")
    if not dist.is_initialized():  # (a driver may train several models in one process)
        dist.init_process_group("gloo", rank=rank, world_size=size)

    torch.manual_seed(args.seed)
    model = DistributedDataParallel(Net())
    if args.gradwire is not None:
        import gradwire.torch as gwt                        # gradwire
        hook = gwt.register(model, **options(args.gradwire))  # gradwire
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    train, test = load(args.data_dir, "train"), load(args.data_dir, "test")
    sampler = DistributedSampler(train, num_replicas=size, rank=rank, seed=args.seed)
    loader = DataLoader(train, batch_size=args.batch_size, sampler=sampler)
    steps = args.epochs * (min(len(loader), args.max_steps) if args.max_steps else len(loader))
    schedule = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
                if args.lr_schedule == "cosine" else None)

    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        model.train()
        start = time.perf_counter()
        for step, (x, y) in enumerate(loader):
            if args.max_steps and step >= args.max_steps:
                break
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            if schedule is not None:
                schedule.step()
        seconds = time.perf_counter() - start
        if rank == 0:  # every rank holds the same model
            model.eval()
            with torch.no_grad():
                x, y = test.tensors
                accuracy = (model.module(x).argmax(1) == y).float().mean().item() * 100
            ran = ",".join(hook.algorithms()) if args.gradwire is not None else "ddp-allreduce"
            print(f"epoch {epoch + 1} loss {loss.item():.4f} test_accuracy {accuracy:.2f} "
                  f"seconds {seconds:.1f} algorithm {ran}", flush=True)


if __name__ == "__main__":
    main()
