"""gradwire's FSDP2 reduce-scatter against FSDP's default one, on the same gradients.

The bound checked is docs/compressed-collectives.md's for reduce-scatter plans: for element i
of the owner's block, E1 = sum over the other ranks r of R(codec, x_r), B = E1 + (P-1)u(A + E1),
avg: B/P + u(|S| + B)/P (S = sum of the inputs, A = sum of their magnitudes, u = 2^-24)."""
import pytest
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.distributed.fsdp._fully_shard._fsdp_api import ReduceScatter
from torch.distributed.fsdp._fully_shard._fsdp_collectives import DefaultReduceScatter

import gradwire
from gradwire.torch import fsdp as gw_fsdp

U = 2.0 ** -24


@pytest.fixture(autouse=True)
def ranks(world):
    if world.size == 1:
        pytest.skip("FSDP reduce-scatters nothing on one rank")
    return world


def sharded_mlp(seed=0, reduce_dtype=None):
    # Three layers, each its own FSDP parameter group (and so its own plan); blocks of several
    # 512-element codec buckets at 2 and 4 ranks.
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                          nn.Linear(64, 10))
    policy = MixedPrecisionPolicy(reduce_dtype=reduce_dtype)
    for layer in model:
        if isinstance(layer, nn.Linear):
            fully_shard(layer, mp_policy=policy)
    fully_shard(model, mp_policy=policy)
    return model


def batch(step, rank):
    g = torch.Generator().manual_seed(1000 * step + rank)
    return torch.randn(16, 32, generator=g), torch.randint(0, 10, (16,), generator=g)


def backward(model, x, y):
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()


class Recorder(ReduceScatter):
    """Runs another reduce-scatter object and keeps what it was given and gave back."""

    def __init__(self, inner):
        self.inner = inner
        self.inputs, self.outputs = [], []

    def allocate(self, size, *, dtype, device):
        return self.inner.allocate(size, dtype=dtype, device=device)

    def __call__(self, output_tensor, input_tensor, group, op, async_op=False):
        self.inputs.append(input_tensor.detach().clone())
        work = self.inner(output_tensor=output_tensor, input_tensor=input_tensor, group=group,
                          op=op, async_op=async_op)
        self.outputs.append(output_tensor.detach().clone())
        return work


def record(model, handle=None):
    """A Recorder on every FSDP module with parameters (around gradwire's or the default)."""
    recorders = {}
    modules = dict(model.named_modules())
    names = handle.comms if handle is not None else \
        [n for n, m in modules.items() if n and isinstance(m, nn.Linear)]
    for name in names:
        inner = handle.comms[name] if handle is not None else DefaultReduceScatter()
        recorders[name] = Recorder(inner)
        modules[name].set_custom_reduce_scatter(recorders[name])
    return recorders


def quantize_bound(blocks, bits, nearest=False, bucket=512):
    """Per element, R(q<bits>, x) of docs/codecs.md for each rank's block (rows), buckets cut
    from the block's start (each block is encoded as its own slice)."""
    P, n = blocks.shape
    pad = (-n) % bucket
    b = F.pad(blocks, (0, pad)).view(P, -1, bucket)
    # Padding must not widen a bucket's range: take min/max over the real elements only.
    real = F.pad(torch.ones_like(blocks, dtype=torch.bool), (0, pad), value=False).view(P, -1,
                                                                                        bucket)
    lo = torch.where(real, b, torch.inf).amin(-1, keepdim=True)
    hi = torch.where(real, b, -torch.inf).amax(-1, keepdim=True)
    step = (hi - lo) / (2 ** bits - 1)
    r = (step / 2 if nearest else step) + 2.0 ** -19 * (lo.abs() + hi.abs()) + 2.0 ** -120
    return r.expand_as(b).reshape(P, -1)[:, :n]


def documented_bound(world, local_input, codec_bits, nearest=False):
    """(exact S/P, the avg bound) for this rank's block, from every rank's input (gathered)."""
    P, me = world.size, world.rank
    gathered = [torch.empty_like(local_input) for _ in range(P)]
    dist.all_gather(gathered, local_input)
    x = torch.stack(gathered).double()  # [rank, count * P]
    count = x.shape[1] // P
    blocks = x[:, me * count:(me + 1) * count]  # every rank's contribution to my block
    S, A = blocks.sum(0), blocks.abs().sum(0)
    if codec_bits:
        R = quantize_bound(blocks, codec_bits, nearest)
        R[me] = 0  # the owner's own block is added unrounded
        E1 = R.sum(0)
    else:
        E1 = torch.zeros_like(S)
    B = E1 + (P - 1) * U * (A + E1)
    return S / P, B / P + U * (S.abs() + B) / P


BOUND_CASES = [("none", 0), ("q8", 8), ("q4", 4)]


@pytest.mark.parametrize("codec,bits", BOUND_CASES, ids=[c for c, _ in BOUND_CASES])
def test_shards_within_the_documented_bound_of_the_default(world, codec, bits):
    reference, model = sharded_mlp(), sharded_mlp()
    handle = gw_fsdp.compress(model, codec=codec, seed=3)
    want, got = record(reference), record(model, handle)
    x, y = batch(0, world.rank)
    backward(reference, x, y)
    backward(model, x, y)
    assert handle.algorithms() == ["dense" if codec == "none" else "compressed-reduce-scatter"]
    assert set(want) == set(got) and len(got) == 3
    differs = False
    for name in got:
        assert len(got[name].inputs) == 1
        # The same gradients went into both reduce-scatters.
        assert torch.equal(got[name].inputs[0], want[name].inputs[0]), name
        exact, bound = documented_bound(world, got[name].inputs[0], bits)
        default_bound = documented_bound(world, want[name].inputs[0], 0)[1]
        ours, theirs = got[name].outputs[0].double(), want[name].outputs[0].double()
        assert bool(((theirs - exact).abs() <= default_bound).all()), name
        err = (ours - exact).abs()
        worst = int((err - bound).argmax())
        assert bool((err <= bound).all()), \
            f"{name}: element {worst} off by {err[worst]:.3g}, bound {bound[worst]:.3g}"
        differs = differs or not torch.equal(ours, theirs)
    if codec != "none":
        assert differs, "the compressed shards equal the default's: nothing was compressed"
    # What FSDP made of the shards: the sharded gradients match the default's within the same
    # bounds (codec none: float rounding).
    if codec == "none":
        for pa, pb in zip(reference.parameters(), model.parameters()):
            torch.testing.assert_close(pb.grad.to_local(), pa.grad.to_local(),
                                       rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
def test_16_bit_reduce_dtype_matches_the_default(world, dtype):
    # FSDP asks for SUM (float16, dividing before and after itself) or AVG (bfloat16); the
    # plan reduces the widened gradients in float32. The default sums in 16 bits, so the two
    # agree within a few 16-bit roundings per rank.
    reference, model = sharded_mlp(reduce_dtype=dtype), sharded_mlp(reduce_dtype=dtype)
    handle = gw_fsdp.compress(model, codec="none")
    want, got = record(reference), record(model, handle)
    x, y = batch(0, world.rank)
    backward(reference, x, y)
    backward(model, x, y)
    assert handle.algorithms() == ["dense"]
    eps = torch.finfo(dtype).eps
    for name in got:
        assert got[name].outputs[0].dtype == dtype
        ours, theirs = got[name].outputs[0].float(), want[name].outputs[0].float()
        scale = want[name].inputs[0].float().abs().max() * world.size
        torch.testing.assert_close(ours, theirs, rtol=(world.size + 1) * eps,
                                   atol=float((world.size + 1) * eps * scale))
    for pa, pb in zip(reference.parameters(), model.parameters()):
        assert pb.grad.dtype == torch.float32


def test_error_feedback_carries_the_rounding_into_later_steps(world):
    # The same gradients every step. With the residual, the sum of T outputs stays within about
    # one step's bound of T times the exact average (the errors telescope into the final
    # residual); without it, nearest rounding repeats the same error T times.
    steps = 12
    drift = {}
    for feedback in (True, False):
        model = sharded_mlp()
        handle = gw_fsdp.compress(model, codec="q4:round=nearest", error_feedback=feedback)
        rec = record(model, handle)
        x, y = batch(0, world.rank)
        for _ in range(steps):
            backward(model, x, y)
        ratios = []
        for r in rec.values():
            assert all(torch.equal(i, r.inputs[0]) for i in r.inputs)
            exact, bound = documented_bound(world, r.inputs[0], 4, nearest=True)
            total = torch.stack(r.outputs).double().sum(0)
            ratios.append(((total - steps * exact).abs() / bound).max().item())
        drift[feedback] = max(ratios)
        handle.close()
    assert drift[True] <= 2.0, f"with error feedback: {drift[True]:.2f} single-step bounds"
    assert drift[False] > 4.0, f"without error feedback: {drift[False]:.2f} single-step bounds"


def train(world, codec, steps=100):
    """Mean loss over ranks per step: a sharded student fitting a teacher network's labels on
    a fixed set of 4 batches per rank (each rank its own), through gradwire's reduce-scatter
    (codec None: FSDP's default)."""
    torch.manual_seed(42)
    teacher = nn.Sequential(nn.Linear(32, 64), nn.Tanh(), nn.Linear(64, 10))
    data = []
    for b in range(4):
        g = torch.Generator().manual_seed(7919 * b + world.rank)
        x = torch.randn(32, 32, generator=g)
        with torch.no_grad():
            data.append((x, teacher(x).argmax(1)))
    model = sharded_mlp(seed=1)
    handle = gw_fsdp.compress(model, codec=codec) if codec else None
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(steps):
        x, y = data[step % len(data)]
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        mean = loss.detach().clone()
        dist.all_reduce(mean)
        losses.append(mean.item() / world.size)
    if handle is not None:
        assert handle.algorithms() == ["compressed-reduce-scatter"]
        handle.close()
    return losses


_default_losses = {}


@pytest.mark.parametrize("codec", ["q8", "q4"])
def test_training_converges(world, codec):
    # The loss over the last two passes over the data must fall below a twentieth of the first
    # pass's, and stay within 0.05 of what FSDP's default reduce-scatter reaches.
    if world.size not in _default_losses:
        _default_losses[world.size] = train(world, None)
    default = _default_losses[world.size]
    losses = train(world, codec)
    start, end = sum(losses[:4]) / 4, sum(losses[-8:]) / 8
    default_end = sum(default[-8:]) / 8
    assert end <= 0.05 * start, f"{codec}: loss {start:.3f} -> {end:.3f}"
    assert end <= default_end + 0.05, f"{codec}: loss {end:.3f}, default {default_end:.3f}"


def test_bad_codec_raises_on_every_rank(world):
    model = sharded_mlp()
    with pytest.raises(gradwire.InvalidArgumentError, match="'q3'") as e:
        gw_fsdp.compress(model, codec="q3")
    assert e.value.code == 1


def test_a_model_without_fsdp_is_refused(world):
    with pytest.raises(gradwire.InvalidArgumentError, match="fully_shard"):
        gw_fsdp.compress(nn.Linear(4, 4), codec="q8")


def test_a_divide_factor_fsdp_cannot_average_with_is_refused(world):
    # A factor other than the world size makes FSDP ask for PREMUL_SUM: refused by name on
    # every rank (each rank sees the same op, so none waits for another).
    model = sharded_mlp()
    gw_fsdp.compress(model, codec="q8")
    for m in model.modules():  # each FSDP module sets its own groups' factor
        if isinstance(m, FSDPModule):
            m.set_gradient_divide_factor(world.size + 1.0)
    x, y = batch(0, world.rank)
    with pytest.raises(gradwire.UnsupportedError, match="PREMUL_SUM"):
        backward(model, x, y)
