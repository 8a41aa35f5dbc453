"""gradwire's DDP hook against DDP's own allreduce and against the same plans run directly."""
import io
import os

import pytest
import torch
import torch.nn.functional as F

import gradwire
import gradwire.torch as gwt

from models import backward, batch, ddp, mlp, sgd_steps, twin


@pytest.mark.parametrize("view", [False, True], ids=["copy", "bucket_view"])
def test_codec_none_matches_default_allreduce(world, view):
    a, b = mlp(), mlp()
    da, db = ddp(a, view), ddp(b, view)
    hook = gwt.register(db, codec="none")
    sgd_steps(da, 20, world.rank)
    sgd_steps(db, 20, world.rank)
    assert hook.algorithms() == ["dense"]
    assert all(s["whole_bucket"] for s in hook.stats())
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)


def test_a_bucket_whose_plan_runs_dense_goes_whole_and_in_place(world):
    # codec none, and auto below its 4 KiB floor (dense without a trial): one allreduce of
    # DDP's whole bucket, as DDP's own; a compressed plan packs its parameters instead.
    torch.manual_seed(0)
    tiny = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 32))
    models = [twin(tiny) for _ in range(3)]
    default, auto, q8 = (ddp(m) for m in models)
    h_auto = gwt.register(auto, codec="q8", min_compress_numel=64)
    h_q8 = gwt.register(q8, codec="q8", algorithm="sra", min_compress_numel=64)
    x = torch.randn(16, 8, generator=torch.Generator().manual_seed(world.rank))
    for model in (default, auto, q8):
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        for _ in range(4):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    assert h_auto.algorithms() == ["dense"]
    assert all(s["whole_bucket"] for s in h_auto.stats())
    assert not any(s["whole_bucket"] for s in h_q8.stats())
    for pa, pb in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)


def expected_grads(world, hook, local, ddp_params, codec, algorithm, seed, dtype):
    """Each bucket's local gradients through fresh plans of the same configuration (the
    library run directly), unpacked to parameters: what the hook must give bit for bit."""
    index = {id(p): i for i, p in enumerate(ddp_params)}
    want = {}
    for _, params in hook.layout().items():
        comp = [(p, local[index[id(p)]]) for p, c in params if c]
        dense = [(p, local[index[id(p)]]) for p, c in params if not c]
        for group, kind in ((comp, "plan"), (dense, "dense")):
            if not group:
                continue
            vec = torch.cat([g.reshape(-1) for _, g in group]).contiguous()
            name = str(dtype).split(".")[-1]
            if kind == "plan" and dtype != torch.float32:  # compressed as float32
                vec, name = vec.float(), "float32"
            if kind == "plan":
                shapes = [(p.shape[0], p.numel() // p.shape[0]) for p, _ in group]
                plan = gradwire.Plan(world, vec.numel(), dtype=name, op="avg", codec=codec,
                                     algorithm=algorithm, seed=seed,
                                     shapes=shapes if algorithm == "powersgd" else ())
                plan.run(vec.data_ptr(), vec.data_ptr())
                plan.destroy()
            else:
                world.allreduce(vec.data_ptr(), vec.data_ptr(), vec.numel(), name, "avg")
            o = 0
            for p, _ in group:
                want[id(p)] = vec[o:o + p.numel()].view_as(p).to(dtype)
                o += p.numel()
    return want


CASES = [("q8", "sra", torch.float32, False),
         ("q8", "sra", torch.float32, True),
         ("q4", "sra", torch.float16, False),
         ("q8", "sra", torch.bfloat16, True),
         ("topk:0.05", "sparse-allgather", torch.float32, False),
         ("none", "powersgd", torch.float32, False),
         ("fp16", "sra", torch.bfloat16, False)]


@pytest.mark.parametrize("codec,algorithm,dtype,view", CASES,
                         ids=[f"{c}-{a}-{str(d)[6:]}-{'view' if v else 'copy'}"
                              for c, a, d, v in CASES])
def test_hook_equals_plan_bit_for_bit(world, codec, algorithm, dtype, view):
    model = mlp(dtype)
    local_model = twin(model)
    d = ddp(model, view)
    hook = gwt.register(d, codec=codec, algorithm=algorithm, seed=7)
    x, y = batch(0, world.rank, dtype)
    backward(d, x, y)  # iteration 0: plain allreduce while DDP settles its buckets
    backward(d, x, y)  # iteration 1: the plans, at step 0
    assert hook.algorithms() == [algorithm]
    backward(local_model, x, y)
    local = [p.grad.clone() for p in local_model.parameters()]
    want = expected_grads(world, hook, local, list(model.parameters()), codec, algorithm, 7,
                          dtype)
    assert len(want) == len(local)
    for p in model.parameters():
        assert p.grad.dtype == dtype
        assert torch.equal(p.grad, want[id(p)]), f"parameter {tuple(p.shape)} differs"


def test_dgc_momentum_reaches_the_dense_parameters(world):
    # With DGC's momentum correction the optimizer has no momentum, so the parameters that
    # travel dense (here all of them) must get it from the hook: a dense plan keeping the
    # velocity. Two backward passes on one batch without an optimizer step: u = g, then
    # 0.5 u + g = 1.5 g, g the average DDP's own allreduce gives.
    model, reference = mlp(), mlp()
    d, r = ddp(model), ddp(reference)
    hook = gwt.register(d, codec="topk:0.01", momentum=0.5, min_compress_numel=10**9)
    x, y = batch(0, world.rank)
    for _ in range(3):  # the first is plain (DDP's buckets settle); then u = g, u = 1.5 g
        backward(d, x, y)
    backward(r, x, y)
    assert all(s["compressed_elements"] == 0 for s in hook.stats())
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, 1.5 * q.grad, rtol=1e-5, atol=1e-6)


def train_state(world, hook_state=None, steps=3):
    """A q8 model trained `steps` steps (first one plain); returns model, ddp, hook."""
    model = mlp()
    d = ddp(model)
    hook = gwt.register(d, codec="q8", algorithm="sra", seed=3)
    if hook_state is not None:
        hook.load_state_dict(hook_state)
    sgd_steps(d, steps, world.rank)
    return model, d, hook


def resume(world, model_state, hook_state):
    """A fresh model and hook from a checkpoint, two steps: DDP's first backward is plain (its
    buckets are not final yet), the second runs the plans with the loaded state."""
    model = mlp()
    model.load_state_dict(model_state)
    d = ddp(model)
    hook = gwt.register(d, codec="q8", algorithm="sra", seed=3)
    if hook_state is not None:
        hook.load_state_dict(hook_state)
    for step in (99, 100):
        x, y = batch(step, world.rank)
        backward(d, x, y)
    return [p.grad.clone() for p in model.parameters()], hook


def test_state_saved_and_loaded_gives_the_same_next_step(world):
    model, d, hook = train_state(world)
    state = hook.state_dict()
    assert state["plans"] and all(v["step"] == 2 for v in state["plans"].values())
    assert all(len(v["plan"]) > 0 for v in state["plans"].values())
    model_state = {k: v.clone() for k, v in model.state_dict().items()}

    restored, h1 = resume(world, model_state, state)
    again, _ = resume(world, model_state, state)
    fresh, h3 = resume(world, model_state, None)
    assert h1.algorithms() == ["sra"]
    # The loaded step went on: 2 saved + 1 run (a fresh hook's plans are at 1).
    assert [v["step"] for v in h1.state_dict()["plans"].values()] == [3] * len(state["plans"])
    assert [v["step"] for v in h3.state_dict()["plans"].values()] == [1] * len(state["plans"])
    for a, b in zip(restored, again):  # the same checkpoint, the same next step, bit for bit
        assert torch.equal(a, b)
    # The state matters: without it (residual 0, step 0) the step differs.
    assert any(not torch.equal(a, b) for a, b in zip(restored, fresh))

    # Another rank count: scripts/test_python.sh runs 1, 2, 3, 4 ranks in turn with a shared
    # GW_PY_STATE_DIR; each loads what the previous count saved.
    directory = os.environ.get("GW_PY_STATE_DIR")
    if directory:
        previous = [f for f in sorted(os.listdir(directory)) if f.endswith(".pt") and
                    f != f"hook-np{world.size}.pt"]
        if previous:
            saved = torch.load(os.path.join(directory, previous[-1]), weights_only=False)
            assert saved["hook"]["world_size"] != world.size
            grads, hook2 = resume(world, saved["model"], saved["hook"])
            assert hook2.algorithms() == ["sra"]
            assert [v["step"] for v in hook2.state_dict()["plans"].values()] == \
                [3] * len(saved["hook"]["plans"])
            assert all(torch.isfinite(g).all() for g in grads)
        if world.rank == 0:
            torch.save({"model": model_state, "hook": state},
                       os.path.join(directory, f"hook-np{world.size}.pt"))


CHECKPOINTED = {
    "q8": dict(codec="q8", algorithm="sra", seed=3),
    # DGC: the velocity lives in the plans (the dense plan's too: the biases), the density
    # warm-up is keyed by the restored step.
    "topk_dgc": dict(codec="topk:0.01", algorithm="sparse-allgather", momentum=0.9,
                     warmup_steps=6, warmup_density=0.25, clip_norm=5.0),
    # PowerSGD: each rank's residual and the warm-started Q.
    "powersgd": dict(codec="none", algorithm="powersgd", powersgd_rank=4),
}


@pytest.mark.parametrize("name", sorted(CHECKPOINTED))
def test_checkpoint_gives_the_uninterrupted_runs_next_step(world, name):
    """Trained 4 steps, checkpointed (model and hook through torch.save), one more step: a
    fresh model and hook restored from the checkpoint take that step bit for bit."""
    options = CHECKPOINTED[name]
    model = mlp()
    d = ddp(model)
    hook = gwt.register(d, **options)
    sgd_steps(d, 4, world.rank)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "hook": hook.state_dict()}, buffer)
    x, y = batch(50, world.rank)
    backward(d, x, y)
    want = [p.grad.clone() for p in model.parameters()]

    def restored(load):
        buffer.seek(0)
        saved = torch.load(buffer, weights_only=True)
        m = mlp(seed=1)
        m.load_state_dict(saved["model"])
        dd = ddp(m)
        h = gwt.register(dd, **options)
        backward(dd, *batch(49, world.rank))  # DDP's first backward (plain): buckets final
        if load:
            h.load_state_dict(saved["hook"])
        backward(dd, x, y)
        return [p.grad.clone() for p in m.parameters()], h

    got, h = restored(True)
    assert h.algorithms() == [options["algorithm"]]
    assert all(torch.equal(a, b) for a, b in zip(got, want)), name
    # The state matters: without it the step differs (so the check above can fail).
    fresh, _ = restored(False)
    assert any(not torch.equal(a, b) for a, b in zip(fresh, want)), name


def test_checkpoint_of_another_configuration_is_refused_on_every_rank(world):
    d = ddp(mlp())
    hook = gwt.register(d, codec="topk:0.01", algorithm="sparse-allgather", momentum=0.9)
    sgd_steps(d, 2, world.rank)
    state = hook.state_dict()
    d2 = ddp(mlp())
    other = gwt.register(d2, codec="q8", algorithm="sra")
    sgd_steps(d2, 2, world.rank)
    with pytest.raises(gradwire.errors.InvalidArgumentError, match="codec topk:ratio=0.01,index=u32,value=f32 there, q8:"):
        other.load_state_dict(state)
    with pytest.raises(gradwire.errors.InvalidArgumentError, match="version 1 held only the residual"):
        other.load_state_dict(dict(state, version=1))


def test_bad_codec_raises_on_every_rank(world):
    d = ddp(mlp())
    with pytest.raises(gradwire.InvalidArgumentError, match="'q3'") as e:
        gwt.register(d, codec="q3")
    assert e.value.code == 1


def test_dtype_the_codec_does_not_take(world):
    d = ddp(mlp(torch.float64))
    with pytest.raises(gradwire.Error, match="float64"):
        gwt.register(d, codec="q8")
    d = ddp(mlp())
    with pytest.raises(gradwire.Error, match="nonsense"):
        gwt.register(d, codec="q8", algorithm="nonsense")


def test_ranks_that_disagree_all_fail(world):
    if world.size == 1:
        pytest.skip("needs two ranks")
    d = ddp(mlp())
    with pytest.raises(gradwire.MismatchError):
        gwt.register(d, codec="q8" if world.rank == 0 else "q4")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_tensors_match_host_plan(world):
    # Device plans on the current stream (host-staged where ranks share a GPU): the result
    # is within float rounding of the same model on the CPU (GPU matmuls differ in rounding).
    device = torch.device("cuda", world.local_rank % torch.cuda.device_count())
    model = mlp().to(device)
    d = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device],
                                                  bucket_cap_mb=0.008)
    hook = gwt.register(d, codec="none", algorithm="dense")
    sgd_steps(d, 5, world.rank)
    torch.cuda.synchronize()
    host = mlp()
    dh = ddp(host)
    sgd_steps(dh, 5, world.rank)
    for a, b in zip(model.parameters(), host.parameters()):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-4, atol=1e-5)
    assert hook.algorithms() == ["dense"]
