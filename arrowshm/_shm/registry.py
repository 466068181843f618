"""The per-namespace registry: one shared segment mapping names to entries.

Every process of a namespace maps the same registry (``/ash-<ns>-reg``);
whoever comes first creates it. An entry is claimed with the registry's
structure lock held, published through a crash-recoverable seqlock (see
:mod:`arrowshm.kernels.seqlock`) with the entry's writer lock held, and read
without any lock. ``list``, ``gc`` and the service read only this table.

Locks hold a pid; the owner's start time sits beside it. A process that finds
a lock held by a dead owner takes it over with a compare-and-swap and then
completes (or rolls back) any seqlock write the dead owner left half done, so
a SIGKILL at any moment costs the next writer at most one liveness check.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .._env import env_directory, env_number
from .._errors import (
    AccessDeniedError,
    ArrowShmError,
    ConflictError,
    CorruptSegmentError,
    FormatVersionError,
    InvalidArgumentError,
    NotFoundError,
    RegistryFullError,
    WaitTimeoutError,
)
from .._names import name_hash, registry_shm_name, segment_shm_name
from .._proc import boot_id, identity, is_alive, pid_namespace
from ..kernels.atomics import atomic_cas, atomic_fetch_add, atomic_load, atomic_store
from ..kernels.futex import eventcount_notify, wait_until_greater
from ..kernels.registry import (
    FULL,
    NOT_FOUND,
    counter_release,
    registry_find,
    registry_find_free,
)
from ..kernels.seqlock import (
    SEQLOCK_EBUSY,
    seqlock_recover,
    seqlock_try_read,
    seqlock_write,
)
from . import header
from . import layout as L
from .directory import agree, check_directory, confirm_default
from .quota import _RESERVATION_LOCKED as _RESERVATION_LOCKED
from .quota import QuotaAccount, Reservation
from .record import (
    EntryView,
    Published,
    Record,
    RegistryStats,
    kind_conflict,
    retain_history,
)
from .segment import SHM_DIR, Segment, locate, owner_of, path_of, unlink

__all__ = [
    "EntryView",
    "Published",
    "Record",
    "Registry",
    "RegistryStats",
    "Reservation",
    "forget_registry",
    "kind_conflict",
    "registry_capacity",
    "registry_of",
    "retain_history",
]

DEFAULT_CAPACITY = 4096
_REGISTRY_ID = int("reg", 36)
_U64 = np.uint64
_ENTRIES_WORD = L.REGISTRY_HEADER_BYTES // L.WORD
_INIT_WAIT_S = 2.0
_CREATE_TRIES = 16
_LOCK_TIMEOUT_S = 10.0
_SEQLOCK_RETRIES = 1 << 14


_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
_MASK = (1 << 64) - 1


def _mix(n: int, key: int) -> int:
    """A bijection of 64-bit words keyed by *key* (xor, then splitmix64's finalizer:
    every step is invertible), so distinct counters give distinct ids."""
    z = (n ^ key) & _MASK
    z = ((z ^ (z >> 30)) * _M1) & _MASK
    z = ((z ^ (z >> 27)) * _M2) & _MASK
    return z ^ (z >> 31)


def _stall_timeout() -> float:
    """Seconds a reader waits for a record stuck mid-write by a live process
    (``ARROWSHM_STALL_TIMEOUT_S``, default 5) before raising instead of hanging."""
    return env_number("ARROWSHM_STALL_TIMEOUT_S", 5.0)


def registry_capacity() -> int:
    """Entries of a newly created registry: ``ARROWSHM_REGISTRY_CAPACITY`` or 4096."""
    return int(env_number("ARROWSHM_REGISTRY_CAPACITY", DEFAULT_CAPACITY))


def _encode_name(name: str) -> npt.NDArray[np.uint64]:
    raw = name.encode()
    padded = raw + b"\0" * (-len(raw) % 8)
    return np.frombuffer(padded, dtype=np.uint64).copy()


class Registry(QuotaAccount):
    """The mapped registry of one namespace (one instance per namespace per process)."""

    def __init__(self, namespace: str, directory: str = SHM_DIR) -> None:
        self.namespace = namespace
        self.directory = directory  # canonical, checked by the context
        self._located = directory != SHM_DIR
        self.shm_name = locate(directory, registry_shm_name(namespace))
        agree(namespace, directory)
        self.segment = self._open_or_create()
        self.words = self.segment.words
        self.w32 = self.segment.w32
        self.capacity = int(self.words[L.H_CAPACITY])
        # which registry this is: one recreated under the same name differs in both
        self.created_ns = int(self.words[L.H_CREATED_NS])
        self.creator_pid = int(self.words[L.H_INIT_PID])
        self.id_key = int(self.words[L.H_ID_KEY])
        # threads of one process serialize on these before the cross-process lock words
        self._thread_lock = threading.Lock()
        self._entry_thread_locks: dict[int, threading.Lock] = {}
        self._name_cache: dict[str, tuple[int, int]] = {}

    # -- creation ---------------------------------------------------------------

    def _open_or_create(self) -> Segment:
        deadline = time.monotonic() + _INIT_WAIT_S
        while True:
            try:
                seg = Segment.open(self.shm_name, writable=True)
            except NotFoundError:
                seg = None
            if seg is None:
                try:
                    return self._create()
                except FileExistsError:
                    continue  # somebody else won the race: open theirs
            magic = int(atomic_load(seg.words, L.H_MAGIC))
            if magic == L.REGISTRY_MAGIC:
                self._check_header(seg)
                return seg
            if magic != 0:
                raise CorruptSegmentError(
                    f"{self.shm_name} is not an arrowshm registry (bad magic); remove it with "
                    f"`rm {path_of(self.shm_name)}` if no arrowshm process uses it",
                    shm_name=self.shm_name,
                )
            # still being initialized by its creator
            init_pid = int(seg.words[L.H_INIT_PID])
            if (init_pid and not is_alive(init_pid, 0)) or time.monotonic() > deadline:
                unlink(self.shm_name)  # its creator died mid-init: start over
                deadline = time.monotonic() + _INIT_WAIT_S
            time.sleep(0.001)

    def _create(self) -> Segment:
        capacity = registry_capacity()
        if capacity < 1 or capacity > 1 << 20:
            raise InvalidArgumentError(
                f"ARROWSHM_REGISTRY_CAPACITY={capacity} is out of range 1..1048576",
                capacity=capacity,
            )
        seg = Segment.create(self.shm_name, L.registry_bytes(capacity),
                             init=lambda seg: self._init_header(seg, capacity))
        if not self._located:
            try:
                confirm_default(self.namespace)
            except ArrowShmError:
                unlink(self.shm_name)  # a process of another directory claimed it first
                raise
        return seg

    @staticmethod
    def _init_header(seg: Segment, capacity: int) -> None:
        w = seg.words
        pid, start = identity()
        w[L.H_INIT_PID] = pid
        w[L.H_INIT_START] = start
        w[L.H_PID_NS] = pid_namespace()
        w[L.H_BOOT_ID], w[L.H_BOOT_ID + 1] = boot_id()
        w[L.H_ID_KEY] = secrets.randbits(64) | 1  # (the registry is 0600: nobody else reads it)
        w[L.H_FORMAT_VERSION] = L.FORMAT_VERSION
        w[L.H_HEADER_BYTES] = L.REGISTRY_HEADER_BYTES
        w[L.H_CAPACITY] = capacity
        w[L.H_ENTRY_BYTES] = L.ENTRY_BYTES
        w[L.H_CREATED_NS] = time.time_ns()
        w[L.H_NEXT_SEGMENT_ID] = 1
        atomic_store(w, L.H_MAGIC, _U64(L.REGISTRY_MAGIC))  # release: header complete

    def _check_header(self, seg: Segment) -> None:
        """Refuse a registry this process must not join (Segment.open already refused
        one of another user): open to others, or made in another PID namespace or
        before a reboot, where the pids it records cannot be judged from here.

        Raises
        ------
        AccessDeniedError, FormatVersionError, CorruptSegmentError
        """
        w = seg.words
        if seg.mode & 0o077:
            raise AccessDeniedError(
                f"registry {path_of(self.shm_name)} has mode {seg.mode:03o}: other users "
                "could read or change it, so arrowshm will not use it; if you did not make "
                f"it so, remove it (`rm {path_of(self.shm_name)}`) once no arrowshm process "
                "of this namespace runs",
                shm_name=self.shm_name, mode=seg.mode,
            )
        version = int(w[L.H_FORMAT_VERSION])
        if version != L.FORMAT_VERSION:
            raise FormatVersionError(
                f"registry {self.shm_name} has format version {version}, this arrowshm reads "
                f"{L.FORMAT_VERSION}: stop the processes of the other arrowshm version or use "
                "another ARROWSHM_NAMESPACE",
                found=version,
                expected=L.FORMAT_VERSION,
            )
        capacity = int(w[L.H_CAPACITY])
        if (
            int(w[L.H_ENTRY_BYTES]) != L.ENTRY_BYTES
            or int(w[L.H_HEADER_BYTES]) != L.REGISTRY_HEADER_BYTES
            or seg.size < L.registry_bytes(capacity)
        ):
            raise CorruptSegmentError(
                f"registry {self.shm_name} has an impossible header (capacity {capacity}, "
                f"size {seg.size}); remove it if no arrowshm process uses it",
                shm_name=self.shm_name,
            )
        made = _identity(w)
        theirs, ours = made.pid_ns, pid_namespace()
        if theirs != ours:
            raise AccessDeniedError(
                f"the registry of namespace {self.namespace!r} was made in another PID "
                f"namespace (pid:[{theirs}]; this process is in pid:[{ours}]), i.e. another "
                "container: processes that share a namespace must also see each other's "
                "pids, or a live process of the other container would look dead and lose "
                "its pinned tables. Share the PID namespace too (docker run --pid=host or "
                "--pid=container:NAME, Kubernetes shareProcessNamespace: true), or use "
                "another ARROWSHM_NAMESPACE in each container (docs/SECURITY.md)",
                shm_name=self.shm_name, pid_ns=theirs, our_pid_ns=ours,
            )
        if made.boot != boot_id():
            elsewhere = "" if not self._located else (
                " (or on another machine: a directory on a network filesystem cannot be "
                "shared between machines)")
            raise AccessDeniedError(
                f"the registry of namespace {self.namespace!r} was made before the last "
                f"reboot{elsewhere}: the processes it records are gone, and their pids may "
                "now name others; nothing of a namespace survives a reboot, even on disk. "
                f"Remove the namespace's objects (`rm {self.directory}/ash-"
                f"{self.namespace}-*`) and start again",
                shm_name=self.shm_name, directory=self.directory,
            )

    # -- addressing --------------------------------------------------------------

    def ew(self, slot: int, field: int) -> int:
        """Absolute word index of *field* of entry *slot*."""
        return _ENTRIES_WORD + slot * L.ENTRY_WORDS + field

    def new_segment_id(self) -> int:
        """A fresh segment id: never reused within this registry's life, and not
        guessable by another user (the counter, mixed with the registry's secret
        key), so nobody can plant a file where a future segment will be named."""
        while True:
            n = int(atomic_fetch_add(self.words, L.H_NEXT_SEGMENT_ID, _U64(1)))
            sid = _mix(n, self.id_key)
            if sid not in (0, _REGISTRY_ID):  # base 36 "reg" names the registry itself
                return sid

    def segment_name(self, segment_id: int) -> str:
        """The locator of segment *segment_id*: its POSIX name in /dev/shm, its path in
        any other directory (see :mod:`arrowshm._shm.segment`)."""
        name = segment_shm_name(self.namespace, segment_id)
        return self.directory + name if self._located else name

    def create_segment(self, nbytes: int, init: Callable[[Segment], None], *,
                       populate: bool = False) -> tuple[int, Segment]:
        """Create a new segment of *nbytes* under a fresh id: its quota bytes are
        reserved first (and given back if anything fails), *init* stamps it before it
        is named. A name someone else's file already holds is skipped for another
        id, a bounded number of times.

        Raises
        ------
        QuotaExceededError, ShmFullError
            When the segment does not fit (nothing is created).
        AccessDeniedError
            When every id tried was taken by another user's file.
        """
        blocked = ""
        for _ in range(_CREATE_TRIES):
            res = self.reserve_for_creation(nbytes)

            def stamped(seg: Segment, res: Reservation = res) -> None:
                init(seg)
                res.settle()  # named next: from then on the segment accounts for its bytes

            sid = self.new_segment_id()
            name = self.segment_name(sid)
            try:
                return sid, Segment.create(name, nbytes, populate=populate, init=stamped)
            except FileExistsError:
                res.cancel()
                blocked = name
            except BaseException:
                res.cancel()
                raise
        raise AccessDeniedError(
            f"could not create a segment in namespace {self.namespace!r}: {_CREATE_TRIES} "
            f"names in a row were taken by files that are not arrowshm's, the last one "
            f"{blocked} of {owner_of(blocked)}; remove them (someone may be squatting the "
            "namespace's names)",
            shm_name=blocked,
        )

    # -- lookup and reading -------------------------------------------------------

    def lookup(self, name: str) -> tuple[int, int] | None:
        """(slot, generation) of the LIVE entry *name*, or None."""
        key = _encode_name(name)
        out = np.zeros(1, dtype=np.uint64)
        slot = registry_find(
            self.words, _ENTRIES_WORD, L.ENTRY_WORDS, self.capacity, L.E_STATE,
            L.E_GENERATION, L.E_NAME_HASH, L.E_NAME_LEN, L.E_NAME,
            _U64(name_hash(name)), key, len(name.encode()), out,
        )  # fmt: skip
        if slot == NOT_FOUND:
            return None
        return int(slot), int(out[0])

    def cached_lookup(self, name: str) -> tuple[int, int] | None:
        """:meth:`lookup` through a per-process cache; callers re-validate the
        generation when they read the entry (:meth:`read_record`)."""
        hit = self._name_cache.get(name)
        if hit is not None:
            return hit
        found = self.lookup(name)
        if found is not None:
            self._name_cache[name] = found
        return found

    def forget(self, name: str) -> None:
        self._name_cache.pop(name, None)

    def read_record(self, slot: int, generation: int) -> npt.NDArray[np.uint64] | None:
        """The entry's record, or None when the slot no longer holds that generation
        of a LIVE entry (deleted, or reused for another name)."""
        out = np.empty(L.RECORD_WORDS, dtype=np.uint64)
        base = self.ew(slot, L.E_SEQLOCK)
        deadline = 0.0
        while True:
            seq = seqlock_try_read(self.words, base, out, _SEQLOCK_RETRIES)
            if seq >= 0:
                break
            if seq != SEQLOCK_EBUSY:
                raise CorruptSegmentError(
                    f"registry {self.shm_name} entry {slot} is out of bounds ({seq})",
                    shm_name=self.shm_name,
                )
            if not deadline:
                deadline = time.monotonic() + _stall_timeout()
            elif time.monotonic() > deadline:
                raise self._stalled_error(slot)
            self._recover_stalled(slot)
        if (
            int(atomic_load(self.words, self.ew(slot, L.E_STATE))) != L.STATE_LIVE
            or int(atomic_load(self.words, self.ew(slot, L.E_GENERATION))) != generation
        ):
            return None
        return out

    def _recover_stalled(self, slot: int) -> None:
        """A seqlock stayed odd: if its writer died, take its lock and recover."""
        lock_idx = self.ew(slot, L.E_LOCK)
        owner = int(atomic_load(self.words, lock_idx))
        start = int(atomic_load(self.words, self.ew(slot, L.E_LOCK_START)))
        if owner and not is_alive(owner, start):
            with self.entry_lock(slot):
                pass  # taking the lock over runs the recovery
        else:
            time.sleep(0.0001)  # a write takes well under a microsecond: yield the core

    def _stalled_error(self, slot: int) -> ArrowShmError:
        """The error for a record that stayed mid-write past the stall timeout: a
        live writer stopped inside its write (e.g. SIGSTOP), or corrupt bytes."""
        owner = int(atomic_load(self.words, self.ew(slot, L.E_LOCK)))
        name = self.read_name(slot)
        if owner:
            return WaitTimeoutError(
                f"entry {name!r} of registry {self.shm_name} has been mid-write for over "
                f"{_stall_timeout():g} s while pid {owner} holds its lock: that process is "
                "stopped or stuck; resume or kill it (a killed writer is recovered at once)",
                name=name, pid=owner,
            )
        return CorruptSegmentError(
            f"entry {name!r} of registry {self.shm_name} reads as mid-write with no writer "
            "holding its lock: the registry is corrupt; delete the entry (`arrowshm rm`) "
            "or remove the namespace's objects if no process uses them",
            shm_name=self.shm_name, name=name,
        )

    def read_name(self, slot: int) -> str:
        n = int(self.words[self.ew(slot, L.E_NAME_LEN)])
        n = min(n, L.NAME_WORDS * 8)
        start = self.ew(slot, L.E_NAME)
        raw = self.words[start : start + L.NAME_WORDS].tobytes()[:n]
        return raw.decode(errors="replace")

    def snapshot(self, slot: int) -> EntryView | None:
        """A consistent view of entry *slot*, or None if it is not LIVE."""
        for _ in range(100):
            gen = int(atomic_load(self.words, self.ew(slot, L.E_GENERATION)))
            if int(atomic_load(self.words, self.ew(slot, L.E_STATE))) != L.STATE_LIVE:
                return None
            name = self.read_name(slot)
            kind = int(self.words[self.ew(slot, L.E_KIND)])
            record = self.read_record(slot, gen)
            if record is None:
                return None
            if int(atomic_load(self.words, self.ew(slot, L.E_GENERATION))) == gen:
                return EntryView(slot, gen, kind, name, record)
        return None

    def entries(self) -> Iterator[EntryView]:
        """Snapshots of every LIVE entry (each consistent; the set is not atomic)."""
        states = self.words[_ENTRIES_WORD + L.E_STATE :: L.ENTRY_WORDS][: self.capacity]
        for slot in np.flatnonzero(states == L.STATE_LIVE):
            view = self.snapshot(int(slot))
            if view is not None:
                yield view

    def get_entry(self, name: str) -> EntryView:
        """Snapshot of *name*'s entry.

        Raises
        ------
        NotFoundError
            When no LIVE entry has that name.
        """
        for _ in range(100):
            found = self.cached_lookup(name)
            if found is None:
                break
            slot, gen = found
            record = self.read_record(slot, gen)
            if record is None:
                self.forget(name)
                continue
            kind = int(self.words[self.ew(slot, L.E_KIND)])
            return EntryView(slot, gen, kind, name, record)
        raise NotFoundError(
            f"{name!r} does not exist in namespace {self.namespace!r}; "
            "`arrowshm ls` lists what does",
            name=name,
            namespace=self.namespace,
        )

    # -- locks ---------------------------------------------------------------------

    def _take(self, lock_idx: int, start_idx: int, what: str, timeout: float) -> bool:
        """Take a pid lock word; returns True if it was taken over from a dead owner."""
        pid, start = identity()
        deadline = time.monotonic() + timeout
        spins = 0
        while True:
            old = int(atomic_cas(self.words, lock_idx, _U64(0), _U64(pid)))
            if old == 0:
                atomic_store(self.words, start_idx, _U64(start))
                return False
            owner_start = int(atomic_load(self.words, start_idx))
            if old != pid and not is_alive(old, owner_start):
                if int(atomic_cas(self.words, lock_idx, _U64(old), _U64(pid))) == old:
                    atomic_store(self.words, start_idx, _U64(start))
                    return True
                continue
            if old == pid and owner_start == start:
                # our own pid holds it, but threads serialize on a threading.Lock first:
                # only a forked child inheriting a held lock can get here
                atomic_store(self.words, lock_idx, _U64(0))
                continue
            spins += 1
            if time.monotonic() > deadline:
                raise WaitTimeoutError(
                    f"{what} of namespace {self.namespace!r} is held by live process {old} "
                    f"for over {timeout:.0f} s; if that process is stuck, kill it",
                    pid=old,
                )
            time.sleep(0 if spins < 100 else 0.0005)

    def _give(self, lock_idx: int, start_idx: int) -> None:
        atomic_store(self.words, start_idx, _U64(0))
        atomic_store(self.words, lock_idx, _U64(0))

    @contextmanager
    def struct_lock(self, timeout: float = _LOCK_TIMEOUT_S) -> Iterator[None]:
        """Serialize changes to the set of names (claims and deletes)."""
        with self._thread_lock:
            self._take(L.H_STRUCT_LOCK, L.H_STRUCT_LOCK_START, "the registry lock", timeout)
            try:
                yield
            finally:
                self._give(L.H_STRUCT_LOCK, L.H_STRUCT_LOCK_START)

    @contextmanager
    def entry_lock(self, slot: int, timeout: float = _LOCK_TIMEOUT_S) -> Iterator[None]:
        """Hold entry *slot*'s writer lock; completes a dead writer's half-done publish."""
        tl = self._entry_thread_locks.setdefault(slot, threading.Lock())
        with tl:
            took_over = self._take(
                self.ew(slot, L.E_LOCK), self.ew(slot, L.E_LOCK_START),
                f"the writer lock of entry {slot}", timeout,
            )  # fmt: skip
            try:
                if took_over:
                    seqlock_recover(self.words, self.ew(slot, L.E_SEQLOCK), L.RECORD_WORDS)
                atomic_store(self.words, self.ew(slot, L.E_LOCK_NS), _U64(time.monotonic_ns()))
                yield
            finally:
                self._give(self.ew(slot, L.E_LOCK), self.ew(slot, L.E_LOCK_START))

    # -- writing ---------------------------------------------------------------------
    # The only code that writes record words: claim (an empty record), publish, update.

    def name_hash_at(self, slot: int) -> int:
        """The name hash stored in entry *slot* (data segments carry it)."""
        return int(self.words[self.ew(slot, L.E_NAME_HASH)])

    def kind_at(self, slot: int) -> int:
        return int(self.words[self.ew(slot, L.E_KIND)])

    def check_kind(self, slot: int, name: str, kind: int) -> None:
        """Raise ConflictError unless entry *slot* (named *name*) is of *kind*."""
        actual = self.kind_at(slot)
        if actual != kind:
            raise kind_conflict(name, actual, kind)

    def claim(self, name: str, kind: int) -> tuple[int, int]:
        """(slot, generation) of *name*, claiming a free entry if it does not exist.

        Raises
        ------
        RegistryFullError
            When the registry has no free entry.
        """
        found = self.lookup(name)
        if found is not None:
            return found
        h = name_hash(name)
        key = _encode_name(name)
        with self.struct_lock():
            found = self.lookup(name)
            if found is not None:
                return found
            slot = registry_find_free(
                self.words, _ENTRIES_WORD, L.ENTRY_WORDS, self.capacity, L.E_STATE, _U64(h)
            )
            if slot == FULL:
                raise RegistryFullError(
                    f"the registry of namespace {self.namespace!r} is full ({self.capacity} "
                    "entries): delete unused datasets or streams (`arrowshm rm`), or recreate "
                    "the namespace with a larger ARROWSHM_REGISTRY_CAPACITY",
                    capacity=self.capacity,
                )
            slot = int(slot)
            w = self.words
            with self.entry_lock(slot):
                gen = int(w[self.ew(slot, L.E_GENERATION)]) + 1
                atomic_store(w, self.ew(slot, L.E_STATE), _U64(L.STATE_CLAIMED))
                atomic_store(w, self.ew(slot, L.E_GENERATION), _U64(gen))
                name_at = self.ew(slot, L.E_NAME)
                w[name_at : name_at + L.NAME_WORDS] = 0
                w[name_at : name_at + len(key)] = key
                w[self.ew(slot, L.E_NAME_LEN)] = len(name.encode())
                w[self.ew(slot, L.E_KIND)] = kind
                w[self.ew(slot, L.E_NAME_HASH)] = h
                # an empty record (version 0) naming its claimer, so that gc can remove an
                # entry whose claimer died before publishing anything into it
                pid, start = identity()
                self._write(slot, Record(owner_pid=pid, owner_start=start,
                                         created_ns=time.time_ns()))
                atomic_store(w, self.ew(slot, L.E_GENERATION), _U64(gen))  # release: name set
                atomic_store(w, self.ew(slot, L.E_STATE), _U64(L.STATE_LIVE))
            atomic_fetch_add(w, L.H_LIVE_ENTRIES, _U64(1))
        return slot, gen

    def _write(self, slot: int, record: Record) -> None:
        """Write *record* into entry *slot* through the seqlock (entry lock held)."""
        status = seqlock_write(self.words, self.ew(slot, L.E_SEQLOCK), record.encode())
        if status < 0:  # EINVAL (layout) or EOWNERDEAD (an unrecovered dead writer): a bug
            raise CorruptSegmentError(
                f"registry {self.shm_name} entry {slot}: seqlock write failed ({status})",
                shm_name=self.shm_name,
                status=status,
            )

    def publish(
        self,
        name: str,
        kind: int,
        make: Callable[[EntryView, int], Record],
        then: Callable[[], None] | None = None,
    ) -> Published:
        """Publish the next record of *name*, claiming the name if it is new.

        Under the entry's writer lock: reads the current record, calls
        ``make(current, name_hash)`` for the next one (it may raise to refuse,
        and stamps its segment with what readers will check), writes it
        through the seqlock, then calls *then* (e.g. marking the segment
        PUBLISHED, which gc must only ever see after the record names it).
        Waiters on the name are woken afterwards.

        Raises
        ------
        RegistryFullError
            When the name is new and the registry has no free entry.
        ConflictError
            When *name* is of another kind, or kept being deleted meanwhile.
        """
        for _ in range(100):
            slot, gen = self.claim(name, kind)
            self.check_kind(slot, name, kind)
            with self.entry_lock(slot):
                words = self.read_record(slot, gen)
                if words is None:  # deleted between claim and lock: claim again
                    self.forget(name)
                    continue
                previous = EntryView(slot, gen, kind, name, words)
                record = make(previous, self.name_hash_at(slot))
                self._write(slot, record)
                if then is not None:
                    then()
            self.notify_entry(slot)
            return Published(slot, gen, previous, record)
        raise ConflictError(f"{name!r} kept being deleted while it was published", name=name)

    def update(self, slot: int, generation: int,
               change: Callable[[EntryView], Record]) -> Record | None:
        """Rewrite entry *slot*'s record as ``change(current)`` if the entry still
        holds *generation*; returns the new record, or None when it is gone.
        Waiters and event watchers see the change."""
        with self.entry_lock(slot):
            words = self.read_record(slot, generation)
            if words is None:
                return None
            view = EntryView(slot, generation, self.kind_at(slot), self.read_name(slot), words)
            record = change(view)
            self._write(slot, record)
        self.notify_entry(slot)
        return record

    def remove(
        self, slot: int, generation: int, only_if: Callable[[EntryView], bool] | None = None
    ) -> EntryView | None:
        """Mark entry *slot* DELETED if it still holds *generation* (and, with
        *only_if*, if its snapshot taken under the locks satisfies it); returns the
        last snapshot (whose segments the caller frees) or None."""
        with self.struct_lock(), self.entry_lock(slot):
            view = self.snapshot(slot)
            if view is None or view.generation != generation:
                return None
            if only_if is not None and not only_if(view):
                return None
            atomic_store(self.words, self.ew(slot, L.E_STATE), _U64(L.STATE_DELETED))
            self.words[self.ew(slot, L.E_LOCK_NS)] = 0
        self._name_cache.pop(view.name, None)
        atomic_fetch_add(self.words, L.H_STAT_DELETES, _U64(1))
        self._dec(L.H_LIVE_ENTRIES, 1)
        self.notify_entry(slot)
        return view

    def _dead_lock_slots(self) -> list[int]:
        """Slots of the entries whose writer lock a dead process holds."""
        w = self.words
        return [slot for slot in range(self.capacity)
                if int(w[self.ew(slot, L.E_STATE)]) != L.STATE_EMPTY
                and (owner := int(atomic_load(w, self.ew(slot, L.E_LOCK))))
                and not is_alive(owner, int(atomic_load(w, self.ew(slot, L.E_LOCK_START))))]

    def dead_locks(self) -> list[str]:
        """Names of the entries whose writer lock a dead process holds (read-only:
        :meth:`recover_dead_writers` is what takes them over)."""
        return [self.read_name(slot) for slot in self._dead_lock_slots()]

    def recover_dead_writers(self) -> list[str]:
        """Complete or roll back what killed writers left half done: a writer lock
        held by a dead process (taking it over completes its seqlock write) and
        entries a dead claimer left CLAIMED. Returns the names recovered."""
        w = self.words
        recovered = []
        for slot in self._dead_lock_slots():
            with self.entry_lock(slot):  # taking it over completes the dead publish
                pass
            recovered.append(self.read_name(slot))
        for slot in range(self.capacity):
            if int(w[self.ew(slot, L.E_STATE)]) == L.STATE_CLAIMED:
                # a claimer died inside the structure lock: the slot is free again
                with self.struct_lock():
                    if int(w[self.ew(slot, L.E_STATE)]) == L.STATE_CLAIMED:
                        w[self.ew(slot, L.E_STATE)] = L.STATE_DELETED
                        recovered.append(self.read_name(slot))
        return recovered
    # -- counters --------------------------------------------------------------------

    def _dec(self, idx: int, n: int) -> None:
        counter_release(self.words, idx, _U64(n))

    def count_put(self) -> None:
        atomic_fetch_add(self.words, L.H_STAT_PUTS, _U64(1))

    def count_reaped(self, n: int) -> None:
        atomic_fetch_add(self.words, L.H_STAT_REAPED, _U64(n))

    def count_recycled(self) -> None:
        atomic_fetch_add(self.words, L.H_STAT_RECYCLED, _U64(1))

    def stats(self) -> RegistryStats:
        """The namespace's counters (for metrics)."""
        w = self.words
        return RegistryStats(
            puts=int(atomic_load(w, L.H_STAT_PUTS)),
            deletes=int(atomic_load(w, L.H_STAT_DELETES)),
            reaped=int(atomic_load(w, L.H_STAT_REAPED)),
            live_entries=int(atomic_load(w, L.H_LIVE_ENTRIES)),
            recycled=int(atomic_load(w, L.H_STAT_RECYCLED)),
            capacity=self.capacity,
            bytes_used=self.bytes_used,
            quota_bytes=self.quota or 0,
            events=self.event_seq(),
        )

    # -- events ------------------------------------------------------------------------

    def notify_entry(self, slot: int) -> None:
        """Wake processes waiting on entry *slot* and on the namespace's event count."""
        w = self.words
        eventcount_notify(
            w, self.ew(slot, L.E_NOTIFY_WAITERS), self.w32, 2 * self.ew(slot, L.E_NOTIFY_FUTEX)
        )
        atomic_fetch_add(w, L.H_EVENT_SEQ, _U64(1))
        eventcount_notify(w, L.H_EVENT_WAITERS, self.w32, 2 * L.H_EVENT_FUTEX)

    def wait_version(self, slot: int, after: int, timeout_s: float) -> int:
        """Block until entry *slot*'s version exceeds *after* (value) or the
        timeout passes (-110). Spins briefly, then futex-waits."""
        return int(
            wait_until_greater(
                self.words, self.ew(slot, L.E_RECORD + L.R_VERSION), _U64(after), self.w32,
                2 * self.ew(slot, L.E_NOTIFY_FUTEX), self.ew(slot, L.E_NOTIFY_WAITERS),
                2000, int(timeout_s * 1e9),
            )
        )  # fmt: skip

    def event_seq(self) -> int:
        return int(atomic_load(self.words, L.H_EVENT_SEQ))

    def wait_event(self, after: int, timeout_s: float) -> int:
        """Block until the namespace's event count exceeds *after*, or -110."""
        return int(
            wait_until_greater(
                self.words, L.H_EVENT_SEQ, _U64(after), self.w32, 2 * L.H_EVENT_FUTEX,
                L.H_EVENT_WAITERS, 2000, int(timeout_s * 1e9),
            )
        )  # fmt: skip

    # -- segments ------------------------------------------------------------------------

    def referenced_segments(self) -> set[int]:
        """Segment ids that some LIVE entry references (current and retained)."""
        refs: set[int] = set()
        for view in self.entries():
            refs |= view.segments()
        return refs

    def free(self, seg: Segment, seen_word: int | None = None) -> int:
        """Reclaim *seg* (see :func:`arrowshm._shm.header.reclaim`) and give its
        bytes back to the quota; returns them (0 if another process was first)."""
        freed = header.reclaim(seg, seen_word)
        if freed:
            self.release(freed)
        return freed

    def unlink_segment(self, segment_id: int) -> int:
        """Free a segment this namespace no longer references and release its
        bytes from the quota; returns the bytes freed (0 if it was gone, or
        another process claimed it first)."""
        name = self.segment_name(segment_id)
        try:
            seg = Segment.open(name, writable=True)
        except NotFoundError:
            return 0
        except AccessDeniedError:  # not ours: never touched (gc reports such objects)
            return 0
        return self.free(seg)


_registries: dict[str, Registry] = {}
_registries_lock = threading.Lock()


@dataclass(frozen=True)
class RegistryIdentity:
    """Where and when a registry was made, read from its header without joining it."""

    pid_ns: int
    boot: tuple[int, int]


def peek_identity(seg: Segment) -> RegistryIdentity | None:
    """The PID namespace and boot id recorded in a registry's header, or None when
    *seg* is not a complete registry (too small, or its magic not yet published).
    Reads only; the caller has checked the object's owner (``arrowshm doctor``)."""
    if seg.size < L.REGISTRY_HEADER_BYTES:
        return None
    w = seg.words
    if int(atomic_load(w, L.H_MAGIC)) != L.REGISTRY_MAGIC:  # acquire: header complete
        return None
    return _identity(w)


def _identity(w: npt.NDArray[np.uint64]) -> RegistryIdentity:
    return RegistryIdentity(int(w[L.H_PID_NS]), (int(w[L.H_BOOT_ID]), int(w[L.H_BOOT_ID + 1])))


def registry_of(namespace: str, directory: str | None = None) -> Registry:
    """The registry of *namespace*, mapped once per process (every user of a
    namespace in a process must share one: its locks serialize the process's
    threads before the cross-process lock words). *directory* is the namespace's
    context's; without it, ``ARROWSHM_DIR`` is read (as a context does)."""
    reg = _registries.get(namespace)
    if reg is None:
        if directory is None:
            directory = check_directory(env_directory())
        with _registries_lock:
            reg = _registries.get(namespace)
            if reg is None:
                reg = Registry(namespace, directory)
                _registries[namespace] = reg
    return reg


def forget_registry(namespace: str) -> None:
    """Drop this process's mapping handle of *namespace*'s registry (tests, after
    unlinking every object of the namespace)."""
    with _registries_lock:
        _registries.pop(namespace, None)


def _forget_all_in_child() -> None:
    # a forked child must not share its parent's thread locks (one may be held)
    global _registries_lock
    _registries.clear()
    _registries_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_all_in_child)
