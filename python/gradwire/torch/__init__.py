"""gradwire for PyTorch DDP: two lines in a training script.

    import gradwire.torch as gwt
    gwt.init()                                     # MPI + torch.distributed from mpirun
    model = DistributedDataParallel(model)
    hook = gwt.register(model, codec="q8")         # every bucket through a gradwire plan

docs/python.md lists register()'s options and the limits.
"""
from ._hook import GradwireHook, register
from ._launch import init, world

__all__ = ["init", "register", "world", "GradwireHook"]
