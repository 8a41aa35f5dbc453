"""Test accuracy of examples/torch/train_fashion_mnist.py at 4 ranks, DDP's default allreduce
beside gradwire's hook (q8, q4, top-k 1 % with DGC, PowerSGD rank 4), one seed per launch:
the five trainings run one after another in one process per rank, so the (slow, on a loaded
machine) start of Python and PyTorch is paid once per seed.

    mpirun -np 4 python bench/torch/fashion_mnist_accuracy.py SEEDS EPOCHS [CONFIGS]

SEEDS and CONFIGS are comma-separated (CONFIGS: names below, default the first five). Prints
`config NAME seed N` before each training's own lines."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "examples", "torch"))
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
]

seeds, epochs = sys.argv[1].split(","), sys.argv[2]
wanted = sys.argv[3].split(",") if len(sys.argv) > 3 else [n for n, _ in CONFIGS]
rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", 0))
for seed in seeds:
    for name, extra in CONFIGS:
        if name not in wanted:
            continue
        if rank == 0:
            print(f"config {name} seed {seed}", flush=True)
        train_fashion_mnist.main(["--epochs", epochs, "--seed", seed, *extra])
