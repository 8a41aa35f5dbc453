"""The C ABI's objects as Python classes: Communicator, Plan, Request.

Buffers are raw addresses (ints) with element counts: the torch layer passes
tensor.data_ptr(), numpy users array.ctypes.data. Nothing is decided here that the library
decides (codec parsing, validation, algorithm choice, agreement between ranks).
"""
import ctypes
import os
import tempfile
import threading
from ctypes import byref, c_int, c_size_t, c_uint64, c_void_p

from . import _lib
from ._lib import call, lib

DTYPES = {"float32": _lib.FLOAT32, "float64": _lib.FLOAT64, "float16": _lib.FLOAT16,
          "bfloat16": _lib.BFLOAT16, "int32": _lib.INT32, "int64": _lib.INT64,
          "uint8": _lib.UINT8}
OPS = {"sum": _lib.SUM, "avg": _lib.AVG, "min": _lib.MIN, "max": _lib.MAX, "prod": _lib.PROD}
THREAD_LEVELS = {"single": _lib.THREAD_SINGLE, "funneled": _lib.THREAD_FUNNELED,
                 "serialized": _lib.THREAD_SERIALIZED, "multiple": _lib.THREAD_MULTIPLE}
_LEVEL_NAMES = {v: k for k, v in THREAD_LEVELS.items()}

_mpi_lock = threading.Lock()


def version():
    return lib.gw_version_string().decode()


def init_mpi(thread_level="multiple"):
    """Initializes MPI unless someone (mpi4py, say) already did. Returns (level MPI provides,
    whether this call initialized it). MPI initialized here is finalized at exit."""
    provided, here = c_int(), c_int()
    with _mpi_lock:
        call("gw_mpi_init", THREAD_LEVELS[thread_level], byref(provided), byref(here))
    return _LEVEL_NAMES[provided.value], bool(here.value)


def finalize_mpi():
    """MPI_Finalize if init_mpi initialized MPI; otherwise nothing."""
    call("gw_mpi_finalize")


def _fortran_handle(mpi_comm):
    if mpi_comm is None:
        f = _lib.MPI_Fint()
        call("gw_mpi_comm_world_f", byref(f))
        return f.value
    if hasattr(mpi_comm, "py2f"):  # an mpi4py communicator
        return mpi_comm.py2f()
    if isinstance(mpi_comm, int):
        return mpi_comm
    raise TypeError("gradwire.Communicator: mpi_comm is None (MPI_COMM_WORLD), an mpi4py "
                    f"communicator or a Fortran handle (int), not {type(mpi_comm).__name__}")


class Request:
    """A collective in flight. wait() or test() until done; the handle is freed then (or when
    the object goes away: freeing a pending request waits for it, as in C)."""

    def __init__(self, handle, keep=None):
        self._h = handle
        self._keep = keep  # buffers the collective still uses
        self.done = False

    def test(self):
        if self.done:
            return True
        flag = c_int()
        call("gw_request_test", self._h, byref(flag))
        if flag.value:
            self._finish()
        return self.done

    def wait(self):
        if not self.done:
            call("gw_request_wait", self._h)
            self._finish()

    def _finish(self):
        self.done = True
        call("gw_request_free", byref(self._h))
        self._keep = None

    def __del__(self):
        if getattr(self, "_h", None):
            lib.gw_request_free(byref(self._h))


class Communicator:
    """gw_comm_t: collective over mpi_comm (None: MPI_COMM_WORLD; an mpi4py communicator; or a
    Fortran handle). gradwire duplicates it. MPI must be initialized (init_mpi, or mpi4py).
    timeline: a path for the process's timeline (docs/timeline.md), the same as setting
    GRADWIRE_TIMELINE for this creation; rank 0 writes it when the communicator is destroyed."""

    def __init__(self, mpi_comm=None, on_timeout=None, timeline=None):
        self._h = _lib.comm_t()
        if timeline:
            # The library's own switch, read at creation: nothing decided here.
            os.environ["GRADWIRE_TIMELINE"] = str(timeline)
        call("gw_comm_create_f", _fortran_handle(mpi_comm), byref(self._h))
        if on_timeout is not None:
            self.set_on_timeout(on_timeout)

    def _get(self, name):
        v = c_int()
        call(name, self._h, byref(v))
        return v.value

    @property
    def rank(self):
        return self._get("gw_comm_rank")

    @property
    def size(self):
        return self._get("gw_comm_size")

    @property
    def local_rank(self):
        return self._get("gw_comm_local_rank")

    @property
    def local_size(self):
        return self._get("gw_comm_local_size")

    def set_on_timeout(self, policy):
        """"abort" (print and end the job) or "return" (raise gradwire.TimeoutError)."""
        values = {"abort": _lib.ON_TIMEOUT_ABORT, "return": _lib.ON_TIMEOUT_RETURN}
        if policy not in values:
            raise ValueError(f"on_timeout is 'abort' or 'return', not {policy!r}")
        call("gw_comm_set_on_timeout", self._h, values[policy])

    def allreduce(self, send, recv, count, dtype="float32", op="sum"):
        call("gw_allreduce", self._h, c_void_p(send), c_void_p(recv), c_size_t(count),
             DTYPES[dtype], OPS[op])

    def iallreduce(self, send, recv, count, dtype="float32", op="sum", keep=None):
        req = _lib.request_t()
        call("gw_iallreduce", self._h, c_void_p(send), c_void_p(recv), c_size_t(count),
             DTYPES[dtype], OPS[op], byref(req))
        return Request(req, keep)

    def broadcast(self, buf, count, dtype="uint8", root=0):
        call("gw_broadcast", self._h, c_void_p(buf), c_size_t(count), DTYPES[dtype], root)

    def broadcast_bytes(self, data, root=0):
        """Collective: root's bytes on every rank (the others' `data` is ignored)."""
        size = (ctypes.c_uint64 * 1)(len(data) if self.rank == root else 0)
        self.broadcast(ctypes.addressof(size), 8, "uint8", root)
        n = size[0]
        buf = ctypes.create_string_buffer(data if self.rank == root else b"", max(n, 1))
        if n:
            self.broadcast(ctypes.addressof(buf), n, "uint8", root)
        return buf.raw[:n]

    def destroy(self):
        """Collective. Destroy every plan made on this communicator first."""
        if self._h:
            call("gw_comm_destroy", byref(self._h))

    def __del__(self):
        if getattr(self, "_h", None):
            lib.gw_comm_destroy(byref(self._h))


class Plan:
    """gw_plan_t: a persistent compressed collective (docs/compressed-collectives.md).

    Collective: every rank makes it with the same arguments, or all get MismatchError.
    shapes: (rows, cols) matrices back to back from element 0 (algorithm "powersgd").
    """

    def __init__(self, comm, count, dtype="float32", op="avg", codec="none", algorithm="auto",
                 collective="allreduce", error_feedback=True, seed=0, momentum=0.0,
                 momentum_masking=True, clip_norm=0.0, warmup_steps=0, warmup_density=0.25,
                 powersgd_rank=4, shapes=(), balance_shards=False, memory="host"):
        cfg = _lib.PlanConfig()
        call("gw_plan_config_init", byref(cfg))
        collectives = {"allreduce": _lib.PLAN_ALLREDUCE, "allgather": _lib.PLAN_ALLGATHER,
                       "reduce_scatter": _lib.PLAN_REDUCE_SCATTER}
        cfg.collective = collectives[collective]
        cfg.count = count
        cfg.dtype = DTYPES[dtype] if isinstance(dtype, str) else int(dtype)
        cfg.op = OPS[op]
        self._codec = (codec or "none").encode()
        self._algorithm = (algorithm or "auto").encode()
        cfg.codec = self._codec
        cfg.algorithm = self._algorithm
        cfg.error_feedback = int(bool(error_feedback))
        cfg.seed = seed
        cfg.momentum = momentum
        cfg.momentum_masking = int(bool(momentum_masking))
        cfg.clip_norm = clip_norm
        cfg.warmup_steps = warmup_steps
        cfg.warmup_density = warmup_density
        cfg.powersgd_rank = powersgd_rank
        flat = [int(v) for rc in shapes for v in rc]
        self._shapes = (c_size_t * max(len(flat), 1))(*flat)
        cfg.shape_count = len(flat) // 2
        cfg.shapes = ctypes.cast(self._shapes, ctypes.POINTER(c_size_t)) if flat else None
        cfg.balance_shards = int(bool(balance_shards))
        cfg.memory = {"host": _lib.MEMORY_HOST, "device": _lib.MEMORY_DEVICE}[memory]
        self.count = count
        self.comm = comm  # a plan must go before its communicator
        self._h = _lib.plan_t()
        call("gw_plan_create", comm._h, byref(cfg), byref(self._h))

    def run(self, send, recv):
        call("gw_plan_run", self._h, c_void_p(send), c_void_p(recv))

    def start(self, send, recv, keep=None):
        req = _lib.request_t()
        call("gw_plan_start", self._h, c_void_p(send), c_void_p(recv), byref(req))
        return Request(req, keep)

    def run_stream(self, send, recv, stream):
        call("gw_plan_run_stream", self._h, c_void_p(send), c_void_p(recv), c_void_p(stream))

    def start_stream(self, send, recv, stream, keep=None):
        req = _lib.request_t()
        call("gw_plan_start_stream", self._h, c_void_p(send), c_void_p(recv), c_void_p(stream),
             byref(req))
        return Request(req, keep)

    def stats(self):
        s = _lib.PlanStats()
        call("gw_plan_stats", self._h, byref(s))
        return {"algorithm": s.algorithm.decode(), "logical_bytes": s.logical_bytes,
                "wire_bytes": s.wire_bytes, "encode_s": s.encode_s,
                "transfer_s": s.transfer_s, "decode_s": s.decode_s, "total_s": s.total_s,
                "decision": (s.decision or b"").decode(), "switches": s.switches,
                "measured_dense_s": s.measured_dense_s,
                "measured_compressed_s": s.measured_compressed_s}

    def set_label(self, label):
        """Names this plan's runs on the timeline (no communication; nothing without one)."""
        call("gw_plan_set_label", self._h, str(label).encode())

    @property
    def step(self):
        v = c_uint64()
        call("gw_plan_step", self._h, byref(v))
        return v.value

    @step.setter
    def step(self, value):
        call("gw_plan_set_step", self._h, c_uint64(value))

    def reset_residual(self):
        call("gw_plan_reset_residual", self._h)

    def save_residual(self, path):
        """Collective; rank 0 writes the file (keyed by global element)."""
        call("gw_plan_save_residual", self._h, str(path).encode())

    def load_residual(self, path):
        """Collective; rank 0 reads the file, loadable at another rank count."""
        call("gw_plan_load_residual", self._h, str(path).encode())

    def save_state(self, path):
        """Collective: everything the next run starts from (every rank's residual, DGC
        velocity, PowerSGD's warm-start Q, the step); rank 0 writes the file. Loaded on as
        many ranks, the next step is bit-identical to the uninterrupted run's; on another
        number of ranks the residual and velocity totals are shared out (docs/python.md,
        "Checkpoints")."""
        call("gw_plan_save_state", self._h, str(path).encode())

    def load_state(self, path):
        """Collective; rank 0 reads and checks the file (another configuration, version or a
        corrupted file: InvalidArgumentError on every rank, naming what differs)."""
        call("gw_plan_load_state", self._h, str(path).encode())

    def state_bytes(self):
        """Collective: save_state's file as bytes, the same on every rank."""
        fd, path = tempfile.mkstemp(prefix="gradwire-state-")
        os.close(fd)
        try:
            self.save_state(path)  # rank 0 writes
            data = open(path, "rb").read() if self.comm.rank == 0 else b""
        finally:
            os.unlink(path)
        return self.comm.broadcast_bytes(data)

    def load_state_bytes(self, data):
        """Collective: load_state from state_bytes()'s bytes (rank 0's are the ones read)."""
        fd, path = tempfile.mkstemp(prefix="gradwire-state-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            self.load_state(path)
        finally:
            os.unlink(path)

    def destroy(self):
        if self._h:
            call("gw_plan_destroy", byref(self._h))

    def __del__(self):
        if getattr(self, "_h", None):
            lib.gw_plan_destroy(byref(self._h))
