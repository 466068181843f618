"""Request and response bodies of the HTTP API (the OpenAPI document is the contract)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_U63 = (1 << 63) - 1
NAME_PATTERN = r"^[A-Za-z0-9._:-][A-Za-z0-9._:/-]{0,199}$"
NAME_DESCRIPTION = (
    "Dataset or stream name: 1-200 letters, digits and `. _ - / :`, no empty `/`-component "
    "and no `..` component (else 422 InvalidNameError)."
)


class ErrorBody(BaseModel):
    """Every error response: the arrowshm exception class and a message."""

    code: str = Field(description="Name of the arrowshm exception class "
                                  "(e.g. NotFoundError); the Python client re-raises it.",
                      examples=["NotFoundError"])
    detail: str = Field(description="What went wrong and what to do about it.")
    fields: dict[str, Any] = Field(default_factory=dict,
                                   description="The error's facts (name, limit, requested …).")


class Health(BaseModel):
    status: Literal["ok"] = Field(description="Always `ok` when the service answers.")
    namespace: str = Field(description="The arrowshm namespace this service manages.")
    version: str = Field(description="arrowshm version of the service.")


class SchemaField(BaseModel):
    name: str = Field(description="Column name.")
    type: str = Field(description="Arrow type, as pyarrow prints it.")
    nullable: bool = Field(description="Whether the column may hold nulls.")


class DatasetSummary(BaseModel):
    """What the registry holds for a dataset (no segment is opened)."""

    name: str = Field(description="Dataset name; may contain `/`.")
    kind: str = Field(description="Entry kind: `dataset`.")
    version: int = Field(description="Current version: 1 for the first put, +1 per put.")
    num_rows: int = Field(description="Rows of the current version.")
    nbytes: int = Field(description="Bytes of the current version's Arrow IPC payload.")
    segment_bytes: int = Field(description="Bytes of the current version's segment.")
    created_at: dt.datetime | None = Field(description="When the name was first put (UTC).")
    updated_at: dt.datetime | None = Field(description="When the current version was "
                                                       "published (UTC).")
    ttl_seconds: float | None = Field(description="Seconds after `updated_at` at which the "
                                                  "dataset expires; null: never.")
    expires_at: dt.datetime | None = Field(description="`updated_at` + ttl; null: never.")
    retain: int = Field(description="How many versions are kept readable.")
    versions: list[int] = Field(description="Retained versions, newest first.")
    owner_pid: int = Field(description="Process that published the current version.")


class VersionReader(BaseModel):
    """A process holding a table of one retained version (a pin on its segment)."""

    version: int = Field(description="The dataset version it holds.")
    pid: int = Field(description="Its process id (of the service's PID namespace).")
    command: str | None = Field(description="Its command name (`/proc/<pid>/comm`); null "
                                            "when it cannot be read (gone, or hidden).")
    since: dt.datetime | None = Field(description="When it took the pin (UTC); null while "
                                                  "the pin is being taken.")
    alive: bool = Field(description="Whether the process still exists; a dead one's pin "
                                    "holds the version until gc releases it.")


class DatasetDetail(DatasetSummary):
    """A dataset with its schema, segment and the processes reading it."""

    segment: str = Field(description="POSIX shared-memory name of the current version.")
    schema_: list[SchemaField] = Field(alias="schema", description="Columns of the current "
                                                                   "version.")
    readers: list[VersionReader] = Field(
        default_factory=list,
        description="Processes holding a table of any retained version, newest version "
                    "first (at most 64 listed per version).")
    readers_overflow: list[int] = Field(
        default_factory=list,
        description="Versions read by more processes than their 64 pin slots list.")
    model_config = ConfigDict(populate_by_name=True)


class DatasetList(BaseModel):
    data: list[DatasetSummary] = Field(description="Datasets, sorted by name.")
    count: int = Field(description="Datasets in the namespace (before offset/limit).")


class DatasetPatch(BaseModel):
    """Fields to change on the current version; absent fields stay as they are."""

    model_config = ConfigDict(extra="forbid")
    ttl_seconds: float | None = Field(
        default=None, gt=0, le=10**9,
        description="New TTL in seconds, counted from the version's `updated_at`; "
                    "null removes the TTL.",
    )
    retain: int | None = Field(default=None, ge=1, le=16,
                               description="Versions to keep (1-16); lowering it frees the "
                                           "older versions now.")


class ReaderInfo(BaseModel):
    reader_id: int = Field(description="Reader slot in the stream.")
    pid: int | None = Field(default=None, description="Reader process id.")
    cursor: int | None = Field(default=None, description="Next batch the reader will read.")
    lag: int | None = Field(default=None, description="Batches behind the writer.")
    held_batches: int | None = Field(default=None, description="Batches the reader still "
                                                               "holds (leases).")
    alive: bool | None = Field(default=None, description="Whether the reader process lives.")
    missed: int | None = Field(default=None, description="Batches it lost to overwrite mode.")


class StreamSummary(BaseModel):
    name: str = Field(description="Stream name; may contain `/`.")
    kind: str = Field(description="Entry kind: `stream`.")
    version: int = Field(description="Registry version counter of the stream entry.")
    batches_written: int = Field(description="Same as `version` (the registry's counter).")
    num_rows: int = Field(description="Rows recorded in the registry entry.")
    nbytes: int = Field(description="Data bytes recorded in the registry entry.")
    segment_bytes: int = Field(description="Bytes of the stream's segment.")
    created_at: dt.datetime | None = Field(description="When the stream was created (UTC).")
    updated_at: dt.datetime | None = Field(description="Last registry update (UTC).")
    owner_pid: int = Field(description="Process that owns (writes) the stream.")


class StreamDetail(StreamSummary):
    model_config = ConfigDict(extra="allow")
    details_available: bool = Field(description="False when the stream module cannot "
                                                "describe readers (registry view only).")
    readers: list[ReaderInfo] | None = Field(description="Readers; null when not available.")


class StreamList(BaseModel):
    data: list[StreamSummary] = Field(description="Streams, sorted by name.")
    count: int = Field(description="Number of streams.")


class Quota(BaseModel):
    namespace: str = Field(description="The namespace the quota applies to.")
    max_bytes: int | None = Field(description="Byte quota of the namespace; null: none.")
    bytes_used: int = Field(description="Bytes of all segments of the namespace (what the "
                                        "quota counts): live data and spares.")
    live_bytes: int = Field(default=0, description="Of `bytes_used`, the bytes of live "
                                                   "datasets and streams (and puts in "
                                                   "progress).")
    spare_bytes: int = Field(default=0, description="Of `bytes_used`, the bytes of spares: "
                                                    "retired segments kept warm for the next "
                                                    "put of any name; reclaimable at any time "
                                                    "(`POST /v1/gc` with `spares`).")
    spares: int = Field(default=0, description="Number of spares.")
    reserve: int = Field(default=0, description="Bytes of spares this service keeps ready "
                                                "(`arrowshm serve --reserve`).")
    shm_free: int = Field(default=0, description="Free bytes of the filesystem holding the "
                                                 "segments (/dev/shm, or `ARROWSHM_DIR`).")
    shm_total: int = Field(default=0, description="Size of that filesystem.")
    directory: str = Field(default="/dev/shm", description="The directory holding the "
                                                           "namespace's registry and segments "
                                                           "(`ARROWSHM_DIR`).")


class Usage(BaseModel):
    """What the namespace holds in shared memory (`arrowshm.usage()`)."""

    namespace: str = Field(description="The namespace.")
    bytes_used: int = Field(description="Bytes of every segment of the namespace (what the "
                                        "quota counts): live + spares.")
    live_bytes: int = Field(description="Bytes of live datasets and streams (and puts in "
                                        "progress).")
    spare_bytes: int = Field(description="Bytes of spares: retired segments kept for the next "
                                         "put, reclaimable at any time.")
    spares: int = Field(description="Number of spares.")
    quota: int | None = Field(description="Byte quota of the namespace; null: none.")
    reserve: int = Field(default=0, description="Bytes of spares the service keeps ready "
                                                "(`--reserve`); 0: none.")
    shm_total: int = Field(description="Size of the filesystem holding the segments.")
    shm_free: int = Field(description="Free bytes of that filesystem.")
    recycled: int = Field(description="Puts that reused a spare instead of fresh pages.")
    directory: str = Field(default="/dev/shm", description="The directory holding the "
                                                           "namespace's registry and segments "
                                                           "(`ARROWSHM_DIR`).")


class QuotaUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_bytes: int | None = Field(ge=1, le=MAX_U63, description="New byte quota; null removes "
                                                               "it. Puts that would exceed it "
                                                               "fail with QuotaExceededError.")


class GcResult(BaseModel):
    segments: list[str] = Field(description="Shared-memory objects removed.")
    bytes_freed: int = Field(description="Bytes returned.")
    expired: list[str] = Field(description="Datasets deleted because their TTL passed.")
    recovered: list[str] = Field(description="Entries whose dead writer left a lock or a "
                                             "half-done publish.")
    kept: int = Field(description="Unreferenced segments kept: a live process is writing them.")
    quota_recovered: int = Field(default=0, description="Quota bytes given back that killed "
                                                        "creators reserved for segments they "
                                                        "never named.")
    readers_evicted: list[str] = Field(description="Dead stream readers evicted.")
    pins_released: list[str] = Field(default_factory=list,
                                     description="Pins of dead processes on dataset versions, "
                                                 "released (`name@version(pid N)`).")
    spares_freed: int = Field(default=0, description="Spares freed (idle, beyond the bound, "
                                                     "or all with `spares`).")
    spares: int = Field(default=0, description="Spares kept.")
    spare_bytes: int = Field(default=0, description="Bytes of the spares kept.")


class GcRequest(BaseModel):
    """Options of `POST /v1/gc` (the body may be omitted)."""

    model_config = ConfigDict(extra="forbid")
    spares: bool = Field(default=False, description="Also free every spare (retired "
                                                    "segments kept warm for new puts).")


class EventData(BaseModel):
    """The JSON of one `data:` line of /v1/events."""

    name: str = Field(description="Dataset or stream name.")
    version: int = Field(description="Version published (for a delete: the last version).")
    kind: Literal["publish", "delete"] = Field(description="What happened.")
    entry_kind: str = Field(description="`dataset` or `stream`.")


class DoctorCheckBody(BaseModel):
    """One check of `arrowshm doctor`."""

    name: str = Field(description="Stable check name (`shm_size`, `open_files`, …; "
                                  "docs/OPERATIONS.md lists them).")
    status: Literal["OK", "WARN", "FAIL"] = Field(description="The verdict.")
    message: str = Field(description="What was found.")
    fix: str = Field(description="What to do about a WARN or FAIL; empty when OK.")
    details: dict[str, Any] = Field(description="The facts behind the verdict (bytes, "
                                                "counts, paths).")


class DoctorResult(BaseModel):
    """`arrowshm doctor --json`, run by the service on its host and namespace."""

    namespace: str = Field(description="The namespace inspected.")
    directory: str = Field(description="The directory holding its segments.")
    status: Literal["OK", "WARN", "FAIL"] = Field(description="The worst status of any check.")
    exit_code: int = Field(description="0, 1 or 2: what `arrowshm doctor` exits with.")
    checks: list[DoctorCheckBody] = Field(description="Every check, in order.")
