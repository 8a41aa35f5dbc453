"""init(): MPI (at the thread level the hook needs), gradwire's world communicator, and
torch.distributed from an mpirun launch, with the rendezvous address agreed over MPI."""
import atexit
import ctypes
import datetime
import os
import socket

import torch
import torch.distributed as dist

from .. import core, errors

_world = None
_progress = None
_owns_process_group = False


def _timeout_s():
    text = os.environ.get("GRADWIRE_TIMEOUT", "300")
    try:
        value = float(text)
    except ValueError:
        value = 300.0  # the library rejects the bad value itself, with its own message
    return value if value > 0 else 300.0


def _agree_address(world):
    """Rank 0's address and a free port on it, broadcast over gradwire (MPI)."""
    buf = bytearray(256)
    if world.rank == 0:
        host = os.environ.get("MASTER_ADDR") or socket.gethostbyname(socket.gethostname())
        port = os.environ.get("MASTER_PORT")
        if not port:
            with socket.socket() as s:
                s.bind(("", 0))
                port = str(s.getsockname()[1])
        text = f"{host}:{port}".encode()
        buf[:len(text)] = text
    arr = (ctypes.c_char * 256).from_buffer(buf)
    world.broadcast(ctypes.addressof(arr), 256, "uint8", 0)
    del arr
    return bytes(buf).rstrip(b"\0").decode()


def init(backend=None, mpi_comm=None, timeline=None):
    """Sets up MPI, gradwire and torch.distributed for an `mpirun` launch; idempotent.

    MPI: initialized at MPI_THREAD_MULTIPLE unless mpi4py (or anyone) did it first; the hook
    needs at least MPI_THREAD_SERIALIZED (its progress thread and the autograd thread take
    turns). torch.distributed: unless already initialized, `backend` (default nccl with CUDA,
    else gloo) with rank and size from MPI and rank 0's address agreed over MPI. Returns the
    gradwire Communicator the hooks use. timeline: a path for gradwire's timeline
    (docs/timeline.md), where each bucket's runs are labelled with its parameters' names."""
    global _world, _progress, _owns_process_group
    if _world is not None:
        return _world
    level, _ = core.init_mpi("multiple")
    if level not in ("serialized", "multiple"):
        raise errors.UnsupportedError(
            f"gradwire.torch.init: MPI provides MPI_THREAD_{level.upper()}; the DDP hook needs "
            "MPI_THREAD_SERIALIZED or MULTIPLE (mpi4py: set mpi4py.rc.thread_level = "
            "'multiple' before importing MPI)")
    world = core.Communicator(mpi_comm, on_timeout="return", timeline=timeline)
    if not dist.is_initialized():
        address = _agree_address(world)
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(world.local_rank % torch.cuda.device_count())
        dist.init_process_group(backend, init_method=f"tcp://{address}", rank=world.rank,
                                world_size=world.size,
                                timeout=datetime.timedelta(seconds=_timeout_s()))
        _owns_process_group = True
    elif (dist.get_rank(), dist.get_world_size()) != (world.rank, world.size):
        raise errors.MismatchError(
            f"gradwire.torch.init: torch.distributed is rank {dist.get_rank()} of "
            f"{dist.get_world_size()}, MPI rank {world.rank} of {world.size}")
    _world = world
    _progress = None
    atexit.register(_shutdown)
    return world


def progress():
    global _progress
    if _progress is None:
        from ._progress import Progress
        _progress = Progress(_timeout_s())
    return _progress


def world():
    if _world is None:
        raise errors.FinalizedError("gradwire.torch: call gradwire.torch.init() first")
    return _world


_hooks = []  # every registered hook's state, destroyed before the communicator


def _shutdown():
    global _world, _owns_process_group
    for h in list(_hooks):
        h.close()
    _hooks.clear()
    if _owns_process_group and dist.is_initialized():
        dist.destroy_process_group()
        _owns_process_group = False
    if _world is not None:
        try:
            _world.destroy()
        except errors.Error:
            pass  # a peer is gone; the library has already leaked what MPI still holds
        _world = None
    core.finalize_mpi()
