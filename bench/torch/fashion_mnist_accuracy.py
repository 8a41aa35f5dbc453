"""Test accuracy of examples/torch/train_fashion_mnist.py at 4 ranks, DDP's default allreduce
beside gradwire's hook (q8, q4, top-k 1 % with DGC, PowerSGD rank 4) and PyTorch's own
PowerSGD hook (rank 4), one seed per launch: the trainings run one after another in one
process per rank, so the (slow, on a loaded machine) start of Python and PyTorch is paid once
per seed.

    mpirun -np 4 python bench/torch/fashion_mnist_accuracy.py SEEDS EPOCHS [CONFIGS]

SEEDS and CONFIGS are comma-separated (CONFIGS: names below, default all). Prints
`config NAME seed N` before each training's own lines."""
import os
import sys

from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "examples", "torch"))
import ddp_rows  # noqa: E402
import train_fashion_mnist  # noqa: E402

CONFIGS = [
    ("ddp", []),
    ("q8", ["--gradwire", "codec=q8,algorithm=sra"]),
    ("q4", ["--gradwire", "codec=q4,algorithm=sra"]),
    # DGC: momentum correction and masking in the plan (the optimizer has none), the density
    # warm-up over the first epoch (235 steps at 4 ranks x 64): 25 % falling to 1 %.
    ("topk-dgc", ["--gradwire",
                  "codec=topk:0.01,algorithm=sparse-allgather,momentum=0.9,warmup_steps=235",
                  "--momentum", "0"]),
    ("powersgd-r4", ["--gradwire", "codec=none,algorithm=powersgd,powersgd_rank=4"]),
    # PyTorch's own PowerSGD hook at rank 4, registered as the throughput benchmark registers it
    # (bench/torch/ddp_rows.py): the example's model through a DDP that carries the hook.
    ("torch-powersgd-r4", []),
]


class _TorchPowerSGD(DistributedDataParallel):
    """DistributedDataParallel with PyTorch's PowerSGD hook (rank 4) registered."""
    state = None

    def __init__(self, module, **kwargs):
        super().__init__(module, **{**kwargs, **ddp_rows.ddp_options("torch-powersgd-r4")})
        _TorchPowerSGD.state = ddp_rows.attach("torch-powersgd-r4", self)


seeds, epochs = sys.argv[1].split(","), sys.argv[2]
wanted = sys.argv[3].split(",") if len(sys.argv) > 3 else [n for n, _ in CONFIGS]
rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", 0))
for seed in seeds:
    for name, extra in CONFIGS:
        if name not in wanted:
            continue
        if rank == 0:
            print(f"config {name} seed {seed}", flush=True)
        if name == "torch-powersgd-r4":
            train_fashion_mnist.DistributedDataParallel = _TorchPowerSGD
        try:
            train_fashion_mnist.main(["--epochs", epochs, "--seed", seed, *extra])
        finally:
            train_fashion_mnist.DistributedDataParallel = DistributedDataParallel
        if name == "torch-powersgd-r4" and rank == 0:
            # The example prints its own "algorithm ddp-allreduce": this line says which hook
            # ran, and that it compressed (PowerSGDState.compression_stats()).
            print(f"hook powersgd-hook-r4 compression_stats "
                  f"{list(_TorchPowerSGD.state.compression_stats())}", flush=True)
