"""A DDP job for the failure tests: `mpirun -np 3 python train_until.py MODE`. Rank 1 fails at
step 3 (MODE raise: a Python exception; die: os._exit; mpi4py: nothing fails, but mpi4py
initialized MPI first). Every rank prints one line, `rank R: RESULT`, and how long it took.
An optional second argument records gradwire's timeline there (gradwire.torch.init)."""
import os
import sys
import time

mode = sys.argv[1]
if mode == "mpi4py":
    from mpi4py import MPI  # noqa: F401  (initializes MPI before gradwire does)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402

import gradwire  # noqa: E402
import gradwire.torch as gwt  # noqa: E402

torch.set_num_threads(1)
world = gwt.init(backend="gloo", timeline=sys.argv[2] if len(sys.argv) > 2 else None)
if mode == "mpi4py":
    from mpi4py import MPI  # noqa: F811
    assert MPI.Is_initialized() and MPI.Query_thread() >= MPI.THREAD_SERIALIZED
    sub = MPI.COMM_WORLD.Split(0, world.size - 1 - world.rank)  # reversed ranks
    comm = gradwire.Communicator(sub)  # from mpi4py, through the Fortran handle
    assert comm.rank == world.size - 1 - world.rank
    comm.destroy()
torch.manual_seed(0)
model = DistributedDataParallel(nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4)))
gwt.register(model, codec="q8")
opt = torch.optim.SGD(model.parameters(), lr=0.1)
start = time.monotonic()
try:
    for step in range(6):
        if step == 3 and world.rank == 1:
            if mode == "raise":
                raise ValueError("injected failure on rank 1")
            if mode == "die":
                os._exit(7)
        x = torch.randn(8, 64)
        opt.zero_grad()
        F.cross_entropy(model(x), torch.zeros(8, dtype=torch.long)).backward()
        opt.step()
    print(f"rank {world.rank}: finished in {time.monotonic() - start:.1f} s", flush=True)
except Exception as e:  # what a training script's user would see
    print(f"rank {world.rank}: {type(e).__name__}: {e} (after {time.monotonic() - start:.1f} s)",
          flush=True)
    sys.exit(1)
