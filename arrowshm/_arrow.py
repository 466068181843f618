"""Arrow facts shared by datasets and streams."""

from __future__ import annotations

import hashlib

import pyarrow as pa

__all__ = ["IPC_OPTIONS", "PARSE_ERRORS", "schema_fingerprint"]

IPC_OPTIONS = pa.ipc.IpcWriteOptions(allow_64bit=True)

# what pyarrow raises on bytes that are not valid IPC (ArrowKeyError is also a KeyError:
# a corrupt payload must never look like a missing name; ArrowNotImplementedError for an
# impossible bit width; UnicodeDecodeError for a name that is not UTF-8)
PARSE_ERRORS = (pa.ArrowException, UnicodeDecodeError, ValueError, KeyError, OSError, EOFError)


def schema_fingerprint(schema: pa.Schema, serialized: pa.Buffer | None = None) -> int:
    """64-bit fingerprint of a schema (fields, types and metadata); *serialized* is
    ``schema.serialize()`` when the caller already has it."""
    data = schema.serialize() if serialized is None else serialized
    digest = hashlib.blake2b(data.to_pybytes(), digest_size=8).digest()
    return int.from_bytes(digest, "little")
