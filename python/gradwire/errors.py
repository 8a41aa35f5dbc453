"""gradwire's errors as Python exceptions: one class per gw_status_t code, `code` and the
library's own message (which names the rank, the call and the cause)."""


class Error(RuntimeError):
    """A failed gradwire call. `code` is the gw_status_t value, `name` its C name."""

    code = 0
    name = "GW_ERROR"

    def __init__(self, message, code=None):
        super().__init__(message)
        if code is not None:
            self.code = code


class InvalidArgumentError(Error, ValueError):
    code, name = 1, "GW_INVALID_ARGUMENT"


class UnsupportedError(Error, TypeError):
    code, name = 2, "GW_UNSUPPORTED"


class TimeoutError(Error):  # noqa: A001 (gradwire.TimeoutError, as the C code's name)
    code, name = 3, "GW_TIMEOUT"


class FinalizedError(Error):
    code, name = 4, "GW_FINALIZED"


class MismatchError(Error):
    code, name = 5, "GW_MISMATCH"


class MPIError(Error):
    code, name = 6, "GW_MPI_ERROR"


class NCCLError(Error):
    code, name = 7, "GW_NCCL_ERROR"


class CUDAError(Error):
    code, name = 8, "GW_CUDA_ERROR"


class WireFormatError(Error):
    code, name = 9, "GW_WIRE_FORMAT"


class InternalError(Error):
    code, name = 10, "GW_INTERNAL"


class OutOfMemoryError(Error, MemoryError):
    code, name = 11, "GW_OUT_OF_MEMORY"


class PeerFailedError(Error):
    code, name = 12, "GW_PEER_FAILED"


_BY_CODE = {c.code: c for c in (InvalidArgumentError, UnsupportedError, TimeoutError,
                                FinalizedError, MismatchError, MPIError, NCCLError, CUDAError,
                                WireFormatError, InternalError, OutOfMemoryError,
                                PeerFailedError)}


def from_status(status, message):
    cls = _BY_CODE.get(status, Error)
    return cls(message, code=status)
