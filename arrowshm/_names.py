"""Names of datasets and streams, namespaces, and the shared-memory object names
derived from them.

A user-facing name is never used in a shared-memory object name: objects are
named ``/ash-<namespace>-<id>`` from integer ids, which keeps every name within
macOS's 31-character limit and makes a namespace's objects easy to list.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re

from ._errors import InvalidNameError

MAX_NAME_LENGTH = 200
MAX_NAME_BYTES = 208  # room in a registry entry (26 words)
_NAME_RE = re.compile(r"[A-Za-z0-9._\-/:]{1,200}")
_NAMESPACE_RE = re.compile(r"[a-z0-9]{1,12}")
SHM_PREFIX = "/ash-"
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
# names and namespaces already found valid: a get's validation is then one set lookup
_valid_names: set[str] = set()
_valid_namespaces: set[str] = set()
_MEMO_MAX = 4096


def validate_name(name: object) -> str:
    """Return *name* if it is a valid dataset or stream name.

    Raises
    ------
    InvalidNameError
        When *name* is not a string of 1-200 letters, digits and ``. _ - / :``,
        or has an empty ``/``-component or a ``..`` component.
    """
    if type(name) is str and name in _valid_names:
        return name
    if not isinstance(name, str):
        raise InvalidNameError(
            f"name must be a str, not {type(name).__name__}", name=name
        )
    if not _NAME_RE.fullmatch(name):
        raise InvalidNameError(
            f"invalid name {name!r}: use 1-{MAX_NAME_LENGTH} characters of letters, "
            "digits and . _ - / :",
            name=name,
        )
    parts = name.split("/")
    if any(part == "" for part in parts):
        raise InvalidNameError(
            f"invalid name {name!r}: no empty '/'-component (no leading, trailing or "
            "doubled '/')",
            name=name,
        )
    if any(part == ".." for part in parts):
        raise InvalidNameError(f"invalid name {name!r}: '..' is not allowed", name=name)
    _remember(_valid_names, name)
    return name


def current_namespace() -> str:
    """Return the namespace in force, read from ``ARROWSHM_NAMESPACE`` at every call.

    Raises
    ------
    InvalidNameError
        When ``ARROWSHM_NAMESPACE`` is not 1-12 characters of ``a-z0-9``.
    """
    return validate_namespace(os.environ.get("ARROWSHM_NAMESPACE", "default"))


def validate_namespace(namespace: str) -> str:
    """Return *namespace* if it is 1-12 characters of ``a-z0-9``.

    Raises
    ------
    InvalidNameError
        Otherwise.
    """
    if type(namespace) is str and namespace in _valid_namespaces:
        return namespace
    if not isinstance(namespace, str) or not _NAMESPACE_RE.fullmatch(namespace):
        raise InvalidNameError(
            f"invalid namespace {namespace!r}: ARROWSHM_NAMESPACE must be 1-12 characters "
            "of a-z and 0-9",
            namespace=namespace,
        )
    _remember(_valid_namespaces, namespace)
    return namespace


def _remember(valid: set[str], value: str) -> None:
    if len(valid) >= _MEMO_MAX:
        valid.clear()
    valid.add(value)


def name_hash(name: str) -> int:
    """A stable 64-bit hash of *name* (never 0, which marks an empty slot)."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") or 1


def base36(value: int) -> str:
    """Encode a non-negative integer in lowercase base 36 (at most 13 characters for 64 bits)."""
    if value == 0:
        return "0"
    out = []
    while value:
        value, rem = divmod(value, 36)
        out.append(_ALPHABET[rem])
    return "".join(reversed(out))


def registry_shm_name(namespace: str) -> str:
    """The shared-memory name of *namespace*'s registry."""
    return f"{SHM_PREFIX}{namespace}-reg"


@functools.lru_cache(maxsize=1024)
def segment_shm_name(namespace: str, segment_id: int) -> str:
    """The shared-memory name of segment *segment_id* of *namespace* (at most 31 characters)."""
    return f"{SHM_PREFIX}{namespace}-{base36(segment_id)}"


def parse_segment_shm_name(namespace: str, shm_name: str) -> int | None:
    """The segment id encoded in *shm_name* (with or without a leading ``/``),
    or None when it is not a data segment of *namespace*."""
    prefix = f"{SHM_PREFIX[1:]}{namespace}-"
    bare = shm_name.lstrip("/")
    if not bare.startswith(prefix):
        return None
    tail = bare[len(prefix):]
    if not tail or tail == "reg" or any(c not in _ALPHABET for c in tail):
        return None
    return int(tail, 36)
