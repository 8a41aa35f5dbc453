"""Compressed reduce-scatter for FSDP2 (`torch.distributed.fsdp.fully_shard`) models.

    import gradwire.torch as gwt
    from gradwire.torch import fsdp as gw_fsdp
    gwt.init()
    fully_shard(layer) for each layer; fully_shard(model)
    handle = gw_fsdp.compress(model, codec="q8")   # every FSDP module's reduce-scatter

FSDP2 flattens each parameter group's gradients into one buffer of P equal blocks (block r:
rank r's shard of every parameter) and reduce-scatters it through the group's `ReduceScatter`
object, which `FSDPModule.set_custom_reduce_scatter` replaces. Ours runs that buffer through
one persistent gradwire reduce-scatter plan per group (docs/compressed-collectives.md,
"Reduce-scatter"): float32 accumulation, the plan's residual carrying each step's rounding into
the next. The library decides codecs, algorithms and validation; this layer only maps FSDP's
call onto the plan.
"""
import torch
import torch.distributed as dist
from torch.distributed.fsdp import FSDPModule
from torch.distributed.fsdp._fully_shard._fsdp_api import ReduceScatter

from .. import core, errors
from . import _launch

_OPS = {dist.ReduceOp.AVG: "avg", dist.ReduceOp.SUM: "sum"}
_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _op_name(op):
    for known, name in _OPS.items():
        try:
            if op == known:
                return name
        except TypeError:  # a ReduceOp object (PREMUL_SUM) does not compare with the enum
            pass
    raise errors.UnsupportedError(
        f"gradwire FSDP reduce-scatter: reduce op {op!r} is not supported (FSDP's default AVG, "
        "or SUM); set_gradient_divide_factor other than the world size makes FSDP ask for "
        "PREMUL_SUM")


class GradwireReduceScatter(ReduceScatter):
    """One FSDP parameter group's reduce-scatter through a persistent gradwire plan."""

    def __init__(self, world, label, options):
        self._world = world
        self._label = label
        self._options = options
        self._plan = None
        self._key = None  # (block elements, op, device type) the plan was made for
        self._send32 = self._recv32 = None  # float32 staging for 16-bit reduce dtypes
        self._checked_groups = set()

    # FSDP allocates the flat input and the shard output through the comm object.
    def allocate(self, size, *, dtype, device):
        return torch.empty(*size, dtype=dtype, device=device)

    def _check_group(self, group):
        if id(group) in self._checked_groups:
            return
        if dist.get_process_group_ranks(group) != list(range(self._world.size)):
            raise errors.UnsupportedError(
                "gradwire FSDP reduce-scatter: the reduce-scatter group must be the whole job "
                f"in rank order (gradwire's communicator has {self._world.size} ranks; this "
                f"group is ranks {dist.get_process_group_ranks(group)}); HSDP and multi-"
                "dimensional meshes are not supported")
        self._checked_groups.add(id(group))

    def _plan_for(self, block, op, device):
        key = (block, op, device.type)
        if self._key == key:
            return self._plan
        with _launch.progress().lock:
            if self._plan is not None:  # FSDP changed the group's layout: a plan for the new one
                self._plan.destroy()
                self._plan = None
            self._plan = core.Plan(self._world, block, dtype="float32", op=op,
                                   collective="reduce_scatter",
                                   memory="device" if device.type == "cuda" else "host",
                                   **self._options)
            self._plan.set_label(self._label)
        self._key = key
        return self._plan

    def __call__(self, output_tensor, input_tensor, group, op, async_op=False):
        if async_op:  # FSDP2 calls it synchronously, inside its own reduce-scatter stream
            raise errors.UnsupportedError("gradwire FSDP reduce-scatter: async_op=True is not "
                                          "supported")
        self._check_group(group)
        if input_tensor.dtype not in _DTYPES:
            raise errors.UnsupportedError(
                f"gradwire FSDP reduce-scatter: reduce dtype {input_tensor.dtype} is not "
                "supported (float32, float16, bfloat16)")
        block = output_tensor.numel()
        if input_tensor.numel() != block * self._world.size:
            raise errors.InvalidArgumentError(
                f"gradwire FSDP reduce-scatter: input of {input_tensor.numel()} elements is not "
                f"{self._world.size} blocks of the output's {block}")
        plan = self._plan_for(block, _op_name(op), input_tensor.device)
        send, recv = input_tensor, output_tensor
        if input_tensor.dtype != torch.float32:
            # The plans compress float32 (and accumulate in it): 16-bit gradients are widened
            # here and the shard narrowed back, as the DDP hook does.
            if self._send32 is None or self._send32.numel() != input_tensor.numel() or \
                    self._send32.device != input_tensor.device:
                self._send32 = torch.empty(input_tensor.numel(), dtype=torch.float32,
                                           device=input_tensor.device)
                self._recv32 = torch.empty(block, dtype=torch.float32,
                                           device=input_tensor.device)
            self._send32.copy_(input_tensor.reshape(-1))
            send, recv = self._send32, self._recv32
        with _launch.progress().lock:
            if send.is_cuda:
                # FSDP calls us inside its reduce-scatter stream: run on it (no host wait).
                stream = torch.cuda.current_stream(send.device).cuda_stream
                plan.run_stream(send.data_ptr(), recv.data_ptr(), stream)
            else:
                plan.run(send.data_ptr(), recv.data_ptr())
        if recv is not output_tensor:
            output_tensor.copy_(recv.view_as(output_tensor))
        return None

    def stats(self):
        s = self._plan.stats() if self._plan is not None else {"algorithm": "not run"}
        s.update(group=self._label, block_elements=self._key[0] if self._key else 0)
        return s

    def close(self):
        if self._plan is not None:
            with _launch.progress().lock:
                self._plan.destroy()
            self._plan = None
            self._key = None


class FSDPCompression:
    """What compress() returns: the reduce-scatter objects it installed, by module name."""

    def __init__(self, comms):
        self.comms = comms  # {module name: GradwireReduceScatter}

    def stats(self):
        """Per parameter group: its plan's statistics (the algorithm that ran, bytes, times)."""
        return [c.stats() for c in self.comms.values()]

    def algorithms(self):
        """The algorithms the plans ran, e.g. ["compressed-reduce-scatter"]."""
        return sorted({s["algorithm"] for s in self.stats()})

    def close(self):
        for c in self.comms.values():
            c.close()


def compress(module, codec="q8", algorithm="auto", *, error_feedback=True, seed=0):
    """Puts the reduce-scatter of every FSDPModule in `module` (itself included) through a
    gradwire reduce-scatter plan, one per parameter group. Collective: the options are checked
    by the library at once (a probe plan), so a bad codec raises here on every rank. Returns an
    FSDPCompression (stats(), algorithms(), close()). docs/python.md lists the options."""
    world = _launch.init()
    options = dict(codec=codec, algorithm=algorithm, error_feedback=error_feedback, seed=seed)
    targets = []
    for name, m in module.named_modules():
        if not isinstance(m, FSDPModule):
            continue
        groups = m._get_fsdp_state()._fsdp_param_groups
        if len(groups) > 1:
            raise errors.UnsupportedError(
                f"gradwire FSDP: module {name or '(root)'} has {len(groups)} parameter groups "
                "(a per-parameter mesh); FSDP takes one custom reduce-scatter per module")
        if groups:  # a module whose parameters all belong to its children has none
            targets.append(name)
    if not targets:
        raise errors.InvalidArgumentError(
            "gradwire FSDP: no FSDP module with parameters in this model; call fully_shard "
            "first")
    with _launch.progress().lock:
        # 256 elements per rank: a reduce-scatter plan runs no cost trial at creation.
        core.Plan(world, 256, dtype="float32", op="avg", collective="reduce_scatter",
                  **options).destroy()
    modules = dict(module.named_modules())
    comms = {}
    for name in targets:
        comm = GradwireReduceScatter(world, f"fsdp {name or '(root)'}", options)
        modules[name].set_custom_reduce_scatter(comm)
        comms[name] = comm
    handle = FSDPCompression(comms)
    _launch._hooks.append(handle)  # plans go before the communicator at exit
    return handle
