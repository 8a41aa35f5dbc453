"""ctypes declarations of the C ABI (include/gradwire/gradwire.h), and nothing else.

Every function returns a gw_status_t; `call` turns a failure into the gradwire.Error subclass
of its code, with gw_last_error()'s message. The structures mirror the header field for field.
"""
import ctypes
import os
from ctypes import (POINTER, Structure, byref, c_char_p, c_double, c_float, c_int, c_size_t,
                    c_uint32, c_uint64, c_void_p)

from . import errors

_HERE = os.path.dirname(os.path.abspath(__file__))


def _find_library():
    # GW_PY_LIBRARY: a libgradwire.so from a build tree (testing the binding on a C++ build).
    explicit = os.environ.get("GW_PY_LIBRARY")
    if explicit:
        return explicit
    path = os.path.join(_HERE, "lib", "libgradwire.so")
    if not os.path.exists(path):
        raise ImportError(f"gradwire: {path} is missing; install the package with "
                          "`pip install ./python` (it builds the library)")
    return path


# RTLD_GLOBAL: Open MPI loads its components (dlopen) expecting libmpi's symbols global.
lib = ctypes.CDLL(_find_library(), mode=ctypes.RTLD_GLOBAL)

comm_t = c_void_p
request_t = c_void_p
plan_t = c_void_p
status_t = c_int
MPI_Fint = c_int

# gw_dtype_t, gw_op_t, gw_plan_collective_t, gw_on_timeout_t, gw_thread_level_t, gw_memory_t
FLOAT32, FLOAT64, FLOAT16, BFLOAT16, INT32, INT64, UINT8 = range(7)
SUM, AVG, MIN, MAX, PROD = range(5)
PLAN_ALLREDUCE, PLAN_ALLGATHER, PLAN_REDUCE_SCATTER = range(3)
ON_TIMEOUT_ABORT, ON_TIMEOUT_RETURN = range(2)
THREAD_SINGLE, THREAD_FUNNELED, THREAD_SERIALIZED, THREAD_MULTIPLE = range(4)
MEMORY_HOST, MEMORY_DEVICE = range(2)


class PlanConfig(Structure):
    _fields_ = [
        ("collective", c_int),
        ("count", c_size_t),
        ("dtype", c_int),
        ("op", c_int),
        ("codec", c_char_p),
        ("algorithm", c_char_p),
        ("error_feedback", c_int),
        ("seed", c_uint64),
        ("momentum", c_float),
        ("momentum_masking", c_int),
        ("clip_norm", c_float),
        ("warmup_steps", c_uint64),
        ("warmup_density", c_double),
        ("powersgd_rank", c_uint32),
        ("shape_count", c_size_t),
        ("shapes", POINTER(c_size_t)),
        ("balance_shards", c_int),
        ("memory", c_int),
    ]


class PlanStats(Structure):
    _fields_ = [
        ("algorithm", c_char_p),
        ("logical_bytes", c_size_t),
        ("wire_bytes", c_size_t),
        ("encode_s", c_double),
        ("transfer_s", c_double),
        ("decode_s", c_double),
        ("total_s", c_double),
        ("decision", c_char_p),
        ("switches", c_int),
        ("measured_dense_s", c_double),
        ("measured_compressed_s", c_double),
    ]


def _declare(name, *argtypes, restype=status_t):
    f = getattr(lib, name)
    f.argtypes = list(argtypes)
    f.restype = restype
    return f


_declare("gw_last_error", restype=c_char_p)
_declare("gw_status_string", c_int, restype=c_char_p)
_declare("gw_version_string", restype=c_char_p)
_declare("gw_mpi_init", c_int, POINTER(c_int), POINTER(c_int))
_declare("gw_mpi_finalize")
_declare("gw_mpi_comm_world_f", POINTER(MPI_Fint))
_declare("gw_comm_create_f", MPI_Fint, POINTER(comm_t))
_declare("gw_comm_split", comm_t, c_int, c_int, POINTER(comm_t))
_declare("gw_comm_destroy", POINTER(comm_t))
for _getter in ("gw_comm_rank", "gw_comm_size", "gw_comm_local_rank", "gw_comm_local_size",
                "gw_comm_node_count"):
    _declare(_getter, comm_t, POINTER(c_int))
_declare("gw_comm_set_on_timeout", comm_t, c_int)
_declare("gw_allreduce", comm_t, c_void_p, c_void_p, c_size_t, c_int, c_int)
_declare("gw_iallreduce", comm_t, c_void_p, c_void_p, c_size_t, c_int, c_int, POINTER(request_t))
_declare("gw_broadcast", comm_t, c_void_p, c_size_t, c_int, c_int)
_declare("gw_request_wait", request_t)
_declare("gw_request_test", request_t, POINTER(c_int))
_declare("gw_request_free", POINTER(request_t))
_declare("gw_plan_config_init", POINTER(PlanConfig))
_declare("gw_plan_create", comm_t, POINTER(PlanConfig), POINTER(plan_t))
_declare("gw_plan_destroy", POINTER(plan_t))
_declare("gw_plan_run", plan_t, c_void_p, c_void_p)
_declare("gw_plan_start", plan_t, c_void_p, c_void_p, POINTER(request_t))
_declare("gw_plan_run_stream", plan_t, c_void_p, c_void_p, c_void_p)
_declare("gw_plan_start_stream", plan_t, c_void_p, c_void_p, c_void_p, POINTER(request_t))
_declare("gw_plan_stats", plan_t, POINTER(PlanStats))
_declare("gw_plan_set_label", plan_t, c_char_p)
_declare("gw_plan_step", plan_t, POINTER(c_uint64))
_declare("gw_plan_set_step", plan_t, c_uint64)
_declare("gw_plan_reset_residual", plan_t)
_declare("gw_plan_save_residual", plan_t, c_char_p)
_declare("gw_plan_load_residual", plan_t, c_char_p)
_declare("gw_plan_save_state", plan_t, c_char_p)
_declare("gw_plan_load_state", plan_t, c_char_p)


def last_error():
    return lib.gw_last_error().decode(errors="replace")


def call(name, *args):
    """Calls gw_<name>; raises the gradwire.Error subclass of a failed status."""
    status = getattr(lib, name)(*args)
    if status != 0:
        raise errors.from_status(status, last_error())


__all__ = ["lib", "call", "byref", "PlanConfig", "PlanStats", "last_error"]
