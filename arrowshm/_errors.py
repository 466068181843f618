"""Every error arrowshm raises, in one tree.

Each class also inherits the builtin exception a caller would naturally catch
(as pyarrow's ``ArrowInvalid(ValueError, ArrowException)`` does), so code that
does not know arrowshm still handles it sensibly::

    ArrowShmError(Exception)
    ├── NotFoundError(KeyError)                 name or version does not exist
    ├── InvalidNameError(ValueError)            name or namespace is malformed
    ├── InvalidArgumentError(ValueError)        any other bad argument
    │   └── SchemaMismatchError                 batch schema differs from the stream's
    ├── ShmFullError(MemoryError)               /dev/shm (or ARROWSHM_DIR) has no room
    ├── QuotaExceededError                      namespace byte quota would be exceeded
    ├── RegistryFullError                       the namespace's registry has no free entry
    ├── WaitTimeoutError(TimeoutError)          a wait or a blocked write timed out
    ├── ResourceLimitError(OSError)             the process ran out of file descriptors
    ├── AccessDeniedError(PermissionError)      another user's segment or socket
    ├── CorruptSegmentError                     a segment's bytes are not a valid arrowshm layout
    │   └── FormatVersionError                  written by an incompatible arrowshm format
    ├── ConflictError                           the object is in a state that forbids this
    │   └── WriterExistsError                   a live writer already owns the stream
    └── StreamClosedError                       closed stream written, or dead writer's read

Errors carry their facts as attributes (``limit``, ``requested``, ``name`` …)
beside the message; kernels never raise, they return status codes
(:mod:`arrowshm.kernels.status`, one table) that :func:`from_status` turns
into these classes.
"""

from __future__ import annotations

import contextlib
from typing import Any

from .kernels import status as _S

__all__ = [
    "AccessDeniedError",
    "ArrowShmError",
    "ConflictError",
    "CorruptSegmentError",
    "FormatVersionError",
    "InvalidArgumentError",
    "InvalidNameError",
    "NotFoundError",
    "QuotaExceededError",
    "RegistryFullError",
    "ResourceLimitError",
    "SchemaMismatchError",
    "ShmFullError",
    "StreamClosedError",
    "WaitTimeoutError",
    "WriterExistsError",
    "from_status",
]


class ArrowShmError(Exception):
    """Base class of every error arrowshm raises.

    Keyword arguments given to the constructor are kept as attributes, so
    ``err.name``, ``err.limit`` … are available to handlers.
    """

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields
        for key, value in fields.items():
            setattr(self, key, value)

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.fields))


def _rebuild(cls: type[ArrowShmError], message: str, fields: dict[str, Any]) -> ArrowShmError:
    return cls(message, **fields)


class NotFoundError(ArrowShmError, KeyError):
    """Raised when a dataset, stream or version of that name does not exist
    (never created, deleted, expired, or a version no longer retained)."""


class InvalidNameError(ArrowShmError, ValueError):
    """Raised when a dataset/stream name or a namespace breaks the naming rules;
    nothing is created."""


class InvalidArgumentError(ArrowShmError, ValueError):
    """Raised for any other argument arrowshm cannot accept (a negative
    retention, an unsupported data type, an unknown mode …)."""


class SchemaMismatchError(InvalidArgumentError):
    """Raised when a record batch written to a stream has a schema other than
    the one the stream was created with."""


class ShmFullError(ArrowShmError, MemoryError):
    """Raised when /dev/shm (or the namespace's ``ARROWSHM_DIR``, which the message
    and the ``directory`` field name) cannot hold a new segment (ENOSPC); nothing
    is left half-created. In Docker, raise the limit with ``--shm-size``."""


class QuotaExceededError(ArrowShmError):
    """Raised when a write would take the namespace past its byte quota;
    nothing is created."""


class RegistryFullError(ArrowShmError):
    """Raised when every entry of the namespace's registry is in use."""


class WaitTimeoutError(ArrowShmError, TimeoutError):
    """Raised when a wait (``wait``, a blocked stream write or read) reaches
    its timeout."""


class ResourceLimitError(ArrowShmError, OSError):
    """Raised when the process hits a resource limit while mapping a segment (every
    mapping holds a file descriptor: EMFILE/ENFILE)."""


class AccessDeniedError(ArrowShmError, PermissionError):
    """Raised when a segment or socket belongs to another user and its mode
    does not allow this user to use it."""


class CorruptSegmentError(ArrowShmError):
    """Raised when a segment's header or payload is not a valid arrowshm
    layout (bad magic, impossible offsets, invalid Arrow data)."""


class FormatVersionError(CorruptSegmentError):
    """Raised when a segment was written with an incompatible arrowshm
    byte-layout version."""


class ConflictError(ArrowShmError):
    """Raised when the object exists but is in a state that forbids the call
    (a stream where a dataset is expected, or the reverse)."""


class WriterExistsError(ConflictError):
    """Raised when a stream already has a live writer."""


class StreamClosedError(ArrowShmError):
    """Raised when writing to a stream its writer has closed, or when reading a
    stream whose writer died without closing it (once its batches are drained)."""


# status code -> (class, what it means); the message is "<what> <meaning>: <fix>"
_STATUS: dict[int, tuple[type[ArrowShmError], str]] = {
    _S.NOT_FOUND: (NotFoundError, "does not exist"),
    _S.REGISTRY_FULL: (RegistryFullError, "has no free entry"),
    _S.QUOTA_EXCEEDED: (QuotaExceededError, "would exceed the namespace's byte quota"),
    _S.PIN_NOT_A_SEGMENT: (CorruptSegmentError, "is not an arrowshm segment"),
    _S.PIN_BAD_FORMAT: (FormatVersionError, "was written with format version {found}; this "
                                            "arrowshm reads format version {expected}"),
    _S.PIN_BAD_OFFSETS: (CorruptSegmentError, "has impossible offsets in its header"),
    _S.RING_FULL: (ConflictError, "has no free reader slot"),
    _S.RING_CORRUPT: (CorruptSegmentError, "holds an impossible ring descriptor or cursor"),
    _S.RING_NOT_OWNER: (ConflictError, "reader slot belongs to another process"),
    _S.ETIMEDOUT: (WaitTimeoutError, "timed out"),
    _S.EBUSY: (WaitTimeoutError, "stayed mid-write"),
    _S.EINVAL: (CorruptSegmentError, "does not fit its segment (impossible layout)"),
    _S.EOWNERDEAD: (CorruptSegmentError, "was left mid-write by a dead writer"),
}


def from_status(code: int, what: str, fix: str = "", **fields: Any) -> ArrowShmError:
    """The error for kernel status *code* about *what* (e.g. ``"stream 'ticks'"``),
    with *fix* telling the user what to do; *fields* become its attributes, beside
    ``status`` (the code) and ``status_name``.
    """
    cls, meaning = _STATUS.get(code, (ArrowShmError, f"failed with status {code}"))
    with contextlib.suppress(KeyError, IndexError):  # (a caller without those fields)
        meaning = meaning.format(**fields)
    message = f"{what} {meaning}" + (f": {fix}" if fix else "")
    return cls(message, status=code, status_name=_S.NAMES.get(code, "?"), **fields)
