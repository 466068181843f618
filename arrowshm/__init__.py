"""arrowshm: zero-copy Apache Arrow tables and streams between processes.

One process ``put``s a table under a name; any process on the host ``get``s it
back as a ``pyarrow.Table`` whose buffers point straight into POSIX shared
memory. Versions are published atomically through a seqlock in a per-namespace
registry, so a reader never sees a torn table, and whatever a crashed process
leaves behind is reclaimed by ``gc``.

>>> import arrowshm, pyarrow as pa
>>> info = arrowshm.put("prices", pa.table({"x": [1, 2, 3]}))
>>> arrowshm.get("prices").num_rows
3
"""


import contextlib
import sys
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from ._errors import (
    AccessDeniedError,
    ArrowShmError,
    ConflictError,
    CorruptSegmentError,
    FormatVersionError,
    InvalidArgumentError,
    InvalidNameError,
    NotFoundError,
    QuotaExceededError,
    RegistryFullError,
    ResourceLimitError,
    SchemaMismatchError,
    ShmFullError,
    StreamClosedError,
    WaitTimeoutError,
    WriterExistsError,
)

if _TYPE_CHECKING:  # the lazily resolved names (see _HOME), for type checkers and docs
    from ._api import (
        build,
        delete,
        gc,
        get,
        info,
        list_datasets,
        list_streams,
        put,
        ref,
        reserve,
        stream_info,
        usage,
        wait,
    )
    from ._client import Client
    from ._datasets.build import TableBuilder
    from ._display import DatasetList
    from ._doctor import DoctorCheck, DoctorReport, doctor
    from ._info import DatasetInfo, GcReport, ReaderInfo, Ref, StreamInfo, Usage, VersionReader
    from ._interop import to_pandas
    from ._mirror import Mirror, MirrorStatus, mirror, mirror_statuses, raise_from_flight
    from ._namespace import Namespace
    from ._streams.reader import StreamReader
    from ._streams.writer import StreamWriter

__version__ = "0.1.0"

__all__ = [
    "AccessDeniedError",
    "ArrowShmError",
    "Client",
    "ConflictError",
    "CorruptSegmentError",
    "DatasetInfo",
    "DatasetList",
    "DoctorCheck",
    "DoctorReport",
    "FormatVersionError",
    "GcReport",
    "InvalidArgumentError",
    "InvalidNameError",
    "Mirror",
    "MirrorStatus",
    "Namespace",
    "NotFoundError",
    "QuotaExceededError",
    "ReaderInfo",
    "Ref",
    "RegistryFullError",
    "ResourceLimitError",
    "SchemaMismatchError",
    "ShmFullError",
    "StreamClosedError",
    "StreamInfo",
    "StreamReader",
    "StreamWriter",
    "TableBuilder",
    "Usage",
    "VersionReader",
    "WaitTimeoutError",
    "WriterExistsError",
    "build",
    "delete",
    "doctor",
    "gc",
    "get",
    "info",
    "list_datasets",
    "list_streams",
    "mirror",
    "mirror_statuses",
    "put",
    "raise_from_flight",
    "ref",
    "reserve",
    "stream_info",
    "to_pandas",
    "usage",
    "wait",
]

# Where each public name that is not imported above lives. Importing arrowshm runs
# only the data plane a get needs (see _load_data_plane); the rest — builders,
# streams, display, pandas interop, the HTTP client, Flight mirrors — is imported
# by the module __getattr__ below on first access, so a worker that only gets
# tables never pays for it.
_HOME: dict[str, str] = {
    **dict.fromkeys(("build", "delete", "gc", "get", "info", "list_datasets",
                     "list_streams", "put", "ref", "reserve", "stream_info", "usage",
                     "wait"), "._api"),
    **dict.fromkeys(("DatasetInfo", "GcReport", "ReaderInfo", "Ref", "StreamInfo", "Usage",
                     "VersionReader"), "._info"),
    "Namespace": "._namespace",
    "Client": "._client",
    "TableBuilder": "._datasets.build",
    "DatasetList": "._display",
    **dict.fromkeys(("DoctorCheck", "DoctorReport", "doctor"), "._doctor"),
    "to_pandas": "._interop",
    **dict.fromkeys(("Mirror", "MirrorStatus", "mirror", "mirror_statuses",
                     "raise_from_flight"), "._mirror"),
    "StreamReader": "._streams.reader",
    "StreamWriter": "._streams.writer",
}  # fmt: skip


def _public(name: str, obj: _Any) -> _Any:
    """Present *obj* as ``arrowshm.<name>`` (its ``__module__``) and bind it here."""
    if getattr(obj, "__module__", "").startswith("arrowshm._"):
        with contextlib.suppress(AttributeError, TypeError):
            obj.__module__ = "arrowshm"
    globals()[name] = obj
    return obj


def __getattr__(name: str) -> _Any:
    """Import the module of a lazily loaded public name on its first access."""
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return _public(name, getattr(import_module(home, __name__), name))


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def _load_data_plane() -> None:
    """Import what ``get`` needs and load the kernels of its first call.

    The kernels ``get`` calls that numba compiles lazily are loaded from numba's
    cache now (:func:`arrowshm.kernels._cache.preload`: nothing is compiled), so a
    fresh worker's first ``get`` does not pay for reading and linking them.
    """
    from . import _api, _info, _namespace
    from .kernels import _cache, atomics, pins, registry, seqlock

    for name, home in _HOME.items():
        module = {"._api": _api, "._info": _info, "._namespace": _namespace}.get(home)
        if module is not None:
            _public(name, getattr(module, name))
    # what a get calls (found by tracing a fresh worker's first get and release), on
    # the only arrays it passes: 64-bit words of writable mappings
    _cache.preload([registry.registry_entry_stamp, registry.registry_find,
                    seqlock.seqlock_try_read, atomics.atomic_load, pins.pin_version,
                    pins.unpin], accept=_get_path_args)


def _get_path_args(args: tuple[_Any, ...]) -> bool:
    from numba import types

    return all(not isinstance(a, types.Literal) and (
        not isinstance(a, types.Array) or (a.dtype == types.uint64 and a.mutable))
        for a in args)


for _name in __all__:
    if _name in globals():
        _public(_name, globals()[_name])
del _name

# The ``arrowshm`` command (``arrowshm_cli``) imports this package without the data
# plane, so that ``arrowshm --help`` and ``arrowshm ls`` need neither numba nor
# pyarrow; every other importer gets it now.
#
# The cyclic garbage collector is paused meanwhile: loading numba, pyarrow and the
# kernels creates hundreds of thousands of long-lived objects, and the collections
# they trigger (each re-scanning everything allocated so far) cost ~30 ms of the
# import here; they would find no garbage. It runs again right after, as before.
if not getattr(sys.modules.get("arrowshm_cli"), "LAZY_PACKAGE", False):
    import gc as _gc

    _collecting = _gc.isenabled()
    _gc.disable()
    try:
        _load_data_plane()
    finally:
        if _collecting:
            _gc.enable()
    del _gc, _collecting
