"""gradwire: compressed collectives for data-parallel training (a binding of the C ABI).

    import gradwire
    gradwire.init_mpi()
    comm = gradwire.Communicator()            # MPI_COMM_WORLD, or an mpi4py communicator
    plan = gradwire.Plan(comm, n, codec="q8")  # collective
    plan.run(x.ctypes.data, x.ctypes.data)

PyTorch users: gradwire.torch (init() and register() of a DDP communication hook;
gradwire.torch.fsdp.compress() for FSDP2 models).
"""
from .core import Communicator, Plan, Request, finalize_mpi, init_mpi, version
from .errors import (CUDAError, Error, FinalizedError, InternalError, InvalidArgumentError,
                     MismatchError, MPIError, NCCLError, OutOfMemoryError, PeerFailedError,
                     TimeoutError, UnsupportedError, WireFormatError)

__all__ = ["Communicator", "Plan", "Request", "init_mpi", "finalize_mpi", "version", "Error",
           "InvalidArgumentError", "UnsupportedError", "TimeoutError", "FinalizedError",
           "MismatchError", "MPIError", "NCCLError", "CUDAError", "WireFormatError",
           "InternalError", "OutOfMemoryError", "PeerFailedError"]
