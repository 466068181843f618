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

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("arrowshm._"):
        with contextlib.suppress(AttributeError, TypeError):
            _obj.__module__ = "arrowshm"
del _name, _obj
