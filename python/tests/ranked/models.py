"""A small MLP and per-rank batches shared by the hook tests."""
import copy

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel


def mlp(dtype=torch.float32, seed=0):
    # 32x64 and 64x48 weights (compressed by default), a 48x10 one below the 1024-element
    # threshold and the biases (dense): every bucket mixes both kinds.
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 48), nn.ReLU(),
                         nn.Linear(48, 10)).to(dtype)


def ddp(model, view=False):
    # 8 KiB buckets: several buckets, so plans are made per bucket.
    return DistributedDataParallel(model, bucket_cap_mb=0.008, gradient_as_bucket_view=view)


def batch(step, rank, dtype=torch.float32):
    g = torch.Generator().manual_seed(1000 * step + rank)
    return torch.randn(16, 32, generator=g).to(dtype), torch.randint(0, 10, (16,), generator=g)


def backward(model, x, y):
    model.zero_grad(set_to_none=False)
    F.cross_entropy(model(x).float(), y).backward()


def sgd_steps(model, steps, rank, lr=0.05):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for s in range(steps):
        x, y = batch(s, rank, next(model.parameters()).dtype)
        opt.zero_grad()
        F.cross_entropy(model(x).float(), y).backward()
        opt.step()


def twin(model):
    return copy.deepcopy(model)
