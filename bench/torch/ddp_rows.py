"""The rows of the DDP throughput and time-to-accuracy benchmarks: how each one reduces
gradients (PyTorch's own hooks, or gradwire's hook with its options), and the bytes each rank
hands to the wire per step.

Bytes: gradwire rows add the plans' own `wire_bytes` (bytes this rank sent in the bucket plan's
last run, docs/compressed-collectives.md) and, for the parameters the hook sends dense (biases,
norms, tensors under `min_compress_numel`), a ring allreduce's 2(P-1)/P of their bytes; a
bucket whose plan runs dense goes whole through one allreduce (`whole_bucket`): its ring bytes.
PyTorch rows are computed with the same ring accounting from what the hook sends: DDP's
allreduce every gradient in float32, fp16_compress_hook in float16, and the PowerSGD hook the
P (rows x r) and Q (cols x r) float32 factors of each matrix it compresses (its own rule:
more than 1 dimension and (rows + cols) * r * min_compression_rate < rows * cols, the matrix
viewed as (shape[0], numel / shape[0])) plus every other gradient dense in float32."""
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook as psgd

# name -> ("torch", options) or ("gradwire", register() options). PowerSGD's documented
# defaults except start_powerSGD_iter: its default (1000) would keep it on plain allreduce
# for the whole benchmark; 2 is the smallest it accepts with error feedback and warm start.
ROWS = {
    "ddp-allreduce": ("torch", {}),
    "torch-fp16": ("torch", {"hook": "fp16"}),
    "torch-powersgd-r1": ("torch", {"hook": "powersgd", "rank": 1}),
    "torch-powersgd-r4": ("torch", {"hook": "powersgd", "rank": 4}),
    "gw-none": ("gradwire", dict(codec="none", algorithm="dense")),
    "gw-fp16": ("gradwire", dict(codec="fp16", algorithm="sra")),
    "gw-q8": ("gradwire", dict(codec="q8", algorithm="sra")),
    "gw-q4": ("gradwire", dict(codec="q4", algorithm="sra")),
    # DGC: momentum correction in the plan (the optimizer then has none), masking, 1 % from the
    # first planned step (throughput: the steady state; the accuracy rows warm up).
    "gw-topk-dgc": ("gradwire", dict(codec="topk:0.01", algorithm="sparse-allgather",
                                     momentum=0.9)),
    "gw-powersgd-r1": ("gradwire", dict(codec="none", algorithm="powersgd", powersgd_rank=1)),
    "gw-powersgd-r4": ("gradwire", dict(codec="none", algorithm="powersgd", powersgd_rank=4)),
    "gw-auto": ("gradwire", dict(codec="q8", algorithm="auto")),
}


def ddp_options(name):
    """DistributedDataParallel's arguments for row `name`. PyTorch's PowerSGD hook gets one
    bucket: on gloo, with several buckets in flight its chained allreduces (P, then Q, issued
    from the futures' callbacks) reach different ranks in different orders, and gloo pairs
    them by order: it aborted with "Received data size doesn't match expected size" on the
    transformer (26 M parameters, 5 buckets). Every other row keeps DDP's defaults."""
    kind, opts = ROWS[name]
    return {"bucket_cap_mb": 4096} if opts.get("hook") == "powersgd" else {}


def optimizer_momentum(name, momentum):
    """DGC rows keep the momentum in the plans; the optimizer gets none."""
    kind, opts = ROWS[name]
    return 0.0 if kind == "gradwire" and opts.get("momentum", 0) > 0 else momentum


def attach(name, ddp_model, extra=None):
    """Registers row `name`'s hook on ddp_model; returns the gradwire hook (or the PowerSGD
    state, or None)."""
    kind, opts = ROWS[name]
    if kind == "gradwire":
        import gradwire.torch as gwt
        return gwt.register(ddp_model, **{**opts, **(extra or {})})
    if opts.get("hook") == "fp16":
        ddp_model.register_comm_hook(None, default_hooks.fp16_compress_hook)
    elif opts.get("hook") == "powersgd":
        state = psgd.PowerSGDState(process_group=None, matrix_approximation_rank=opts["rank"],
                                   start_powerSGD_iter=2)
        ddp_model.register_comm_hook(state, psgd.powerSGD_hook)
        return state
    return None


def _ring(nbytes, size):
    return 2 * (size - 1) * nbytes / size


def wire_bytes(name, params, size, hook=None):
    """Bytes one rank sends per step for row `name` (module docstring). params: the model's
    trainable parameters; hook: the gradwire hook (its plans' statistics)."""
    kind, opts = ROWS[name]
    if kind == "gradwire":
        total = 0.0
        for s in hook.stats():
            if s.get("whole_bucket"):  # one dense allreduce of the whole bucket, not the plan
                total += _ring(4 * (s["compressed_elements"] + s["dense_elements"]), size)
            else:
                total += s.get("wire_bytes", 0) + _ring(4 * s["dense_elements"], size)
        return total
    if opts.get("hook") == "fp16":
        return _ring(2 * sum(p.numel() for p in params), size)
    if opts.get("hook") == "powersgd":
        r, dense, factors = opts["rank"], 0, 0
        for p in params:
            rows = p.shape[0] if p.dim() > 1 else 1
            cols = p.numel() // rows
            if p.dim() > 1 and (rows + cols) * r * 2 < rows * cols:
                factors += (rows + cols) * r
            else:
                dense += p.numel()
        return _ring(4 * (dense + factors), size)
    return _ring(4 * sum(p.numel() for p in params), size)
