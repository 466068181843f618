"""POSIX shared-memory segments: create (sized with ``posix_fallocate`` so a full
/dev/shm is an error, not a SIGBUS), open, map, unlink.

A :class:`Segment` owns one ``mmap``; numpy views of it (``words``, ``w32``)
are what the kernels operate on. The mapping is never closed explicitly: it is
unmapped when the last object referencing it (a view, an Arrow buffer) dies,
so no buffer handed to a user can be unmapped under it.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import pwd
import stat
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import posix_ipc

from .._errors import AccessDeniedError, NotFoundError, ResourceLimitError, ShmFullError

SHM_DIR = "/dev/shm"

_SHM_FULL_HINT = (
    "free space in /dev/shm (run `arrowshm gc`, delete datasets), or give the container "
    "more shared memory (docker run --shm-size=2g …)"
)


class Segment:
    """One mapped shared-memory object.

    Attributes
    ----------
    name : str
        The POSIX name, with its leading ``/``.
    size : int
        Mapped size in bytes.
    mm : mmap.mmap
        The mapping.
    words : numpy.ndarray
        ``uint64`` view of the whole mapping (for the kernels).
    w32 : numpy.ndarray
        ``uint32`` view of the same bytes (futex words).
    address : int
        Address of the first byte of the mapping in this process.
    """

    __slots__ = ("address", "mm", "mode", "name", "size", "w32", "words", "writable")

    def __init__(self, name: str, mm: mmap.mmap, size: int, writable: bool, mode: int):
        self.name = name
        self.mm = mm
        self.size = size
        self.writable = writable
        self.mode = mode  # permission bits (every segment we map is our own)
        buf = np.frombuffer(mm, dtype=np.uint8)
        self.address = int(buf.ctypes.data)
        self.words: npt.NDArray[np.uint64] = buf[: size - size % 8].view(np.uint64)
        self.w32: npt.NDArray[np.uint32] = buf[: size - size % 4].view(np.uint32)

    @classmethod
    def create(
        cls,
        name: str,
        size: int,
        *,
        mode: int = 0o600,
        populate: bool = False,
        init: Callable[[Segment], None] | None = None,
    ) -> Segment:
        """Create, size and map a new segment; nothing is left behind on failure.

        The object is built unnamed (``O_TMPFILE`` in /dev/shm), sized, mapped
        and passed to *init*, and only then linked under *name*: a creator
        killed at any moment leaves either nothing or a segment whose header
        *init* already stamped (its creator's pid), never an anonymous
        half-made object that only an age-based grace period could reclaim.
        Where ``O_TMPFILE`` is unavailable it falls back to ``shm_open``.

        With *populate*, the page tables are filled at mapping time
        (``MAP_POPULATE``), for a creator about to write the whole segment.

        Raises
        ------
        FileExistsError
            When *name* already exists (callers pick fresh names).
        ShmFullError
            When /dev/shm cannot hold *size* bytes.
        """
        try:
            fd = os.open(SHM_DIR, os.O_TMPFILE | os.O_RDWR, mode)
        except OSError as exc:
            if _fds_exhausted(exc):
                raise _fd_limit_error(name, exc) from exc
            if exc.errno == errno.ENOSPC:
                raise ShmFullError(f"cannot create {name}: /dev/shm is full; " + _SHM_FULL_HINT,
                                   requested=size) from exc
            return cls._create_named(name, size, mode=mode, populate=populate, init=init)
        try:
            seg = cls._size_and_map(fd, name, size, mode, populate)
            if init is not None:
                init(seg)
            # linkat(AT_SYMLINK_FOLLOW) of /proc's magic link names the unnamed file
            # (a dir fd makes os.link call linkat; with absolute paths it is unused)
            try:
                os.link(f"/proc/self/fd/{fd}", SHM_DIR + name, src_dir_fd=fd,
                        follow_symlinks=True)
            except FileExistsError as exc:
                raise FileExistsError(errno.EEXIST, f"shared memory {name} exists") from exc
            except OSError as exc:
                if exc.errno == errno.ENOSPC:  # (a directory entry needs no data pages)
                    raise ShmFullError(f"cannot create {name}: /dev/shm is full; "
                                       + _SHM_FULL_HINT, requested=size) from exc
                raise
        finally:
            os.close(fd)  # the mapping keeps the object; unnamed, it dies with it
        return seg

    @classmethod
    def _create_named(
        cls, name: str, size: int, *, mode: int, populate: bool,
        init: Callable[[Segment], None] | None,
    ) -> Segment:
        try:
            shm = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, mode=mode)
        except posix_ipc.ExistentialError as exc:
            raise FileExistsError(errno.EEXIST, f"shared memory {name} exists") from exc
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise ShmFullError(f"cannot create {name}: /dev/shm is full; " + _SHM_FULL_HINT,
                                   requested=size) from exc
            if _fds_exhausted(exc):
                raise _fd_limit_error(name, exc) from exc
            raise
        try:
            seg = cls._size_and_map(shm.fd, name, size, mode, populate)
            if init is not None:
                init(seg)
        except BaseException:
            _unlink_quietly(name)
            raise
        finally:
            shm.close_fd()
        return seg

    @classmethod
    def _size_and_map(cls, fd: int, name: str, size: int, mode: int, populate: bool) -> Segment:
        os.fchmod(fd, mode)  # open applies the umask; the mode asked for is the mode
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.ENOMEM, errno.EFBIG):
                free = _shm_free_bytes()
                raise ShmFullError(
                    f"/dev/shm has no room for {size:,} bytes ({free:,} free): " + _SHM_FULL_HINT,
                    requested=size,
                    available=free,
                ) from exc
            raise
        # the creator writes every page: populate the page tables in one call instead of
        # taking a fault per page (readers map lazily, so their get stays O(1))
        flags = mmap.MAP_SHARED | (getattr(mmap, "MAP_POPULATE", 0) if populate else 0)
        try:
            mm = mmap.mmap(fd, size, flags, mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as exc:
            if _fds_exhausted(exc):  # mmap dups the descriptor
                raise _fd_limit_error(name, exc) from exc
            raise
        return cls(name, mm, size, True, mode)

    @classmethod
    def open(cls, name: str, *, writable: bool = False, populate: bool = False) -> Segment:
        """Map an existing segment of this user (read-only unless *writable*).

        The object must be a regular file owned by the caller's effective uid
        (checked with one ``fstat`` of the descriptor that is then mapped, so
        nothing can be swapped in between): another user's object is never
        read, written or mapped, whatever its mode.

        Raises
        ------
        NotFoundError
            When no segment has that name (e.g. it was just unlinked).
        AccessDeniedError
            When it belongs to another user, or is not a regular file.

        With *populate*, the page tables are filled at mapping time
        (``MAP_POPULATE``), for a process about to write the whole segment.
        """
        try:
            shm = posix_ipc.SharedMemory(name, 0, read_only=not writable)
        except posix_ipc.ExistentialError as exc:
            raise NotFoundError(f"shared memory {name} does not exist", shm_name=name) from exc
        except OSError as exc:
            if _fds_exhausted(exc):
                raise _fd_limit_error(name, exc) from exc
            if exc.errno == errno.ELOOP:  # shm_open never follows a symbolic link
                raise AccessDeniedError(
                    f"{SHM_DIR}{name} is a symbolic link, not a shared-memory object of "
                    "yours; remove it (someone else may have planted it)", shm_name=name,
                ) from exc
            raise
        except posix_ipc.PermissionsError as exc:
            raise AccessDeniedError(
                f"shared memory {name} belongs to another user ({owner_of(name)}) and "
                "arrowshm never uses another user's objects; run as that user, or use "
                "another ARROWSHM_NAMESPACE",
                shm_name=name,
            ) from exc
        try:
            st = os.fstat(shm.fd)
            if st.st_uid != os.geteuid() or not stat.S_ISREG(st.st_mode):
                raise AccessDeniedError(
                    f"shared memory {name} belongs to {_user(st.st_uid)}, not to you "
                    f"({_user(os.geteuid())}): arrowshm never reads, writes or removes "
                    "another user's objects; if it is not supposed to be there, ask "
                    f"its owner (or root) to remove {SHM_DIR}{name}",
                    shm_name=name, owner_uid=st.st_uid,
                )
            size = st.st_size
            if size == 0:
                raise NotFoundError(f"shared memory {name} is empty (being created)",
                                    shm_name=name)
            prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
            flags = mmap.MAP_SHARED | (getattr(mmap, "MAP_POPULATE", 0) if populate else 0)
            try:
                mm = mmap.mmap(shm.fd, size, flags, prot)
            except OSError as exc:
                if _fds_exhausted(exc):  # mmap dups the descriptor
                    raise _fd_limit_error(name, exc) from exc
                raise
        finally:
            shm.close_fd()
        return cls(name, mm, size, writable, stat.S_IMODE(st.st_mode))

    def __repr__(self) -> str:
        return f"Segment({self.name!r}, size={self.size})"


def _user(uid: int) -> str:
    """``uid 1001 (alice)``."""
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def owner_of(name: str) -> str:
    """``uid N (user)`` of the object *name*, as ``lstat`` sees it."""
    try:
        return _user(os.lstat(SHM_DIR + name).st_uid)
    except OSError:
        return "unknown owner"


def _fds_exhausted(exc: OSError) -> bool:
    # posix_ipc raises a bare OSError (no errno) with this text for EMFILE
    return exc.errno in (errno.EMFILE, errno.ENFILE) or "maximum number of files" in str(exc)


def _fd_limit_error(name: str, exc: OSError) -> ResourceLimitError:
    return ResourceLimitError(
        f"cannot map {name}: this process has no file descriptor left ({exc}); "
        "every table it holds keeps one: drop tables you no longer need, or raise the "
        "limit (ulimit -n)",
        shm_name=name,
        errno=exc.errno,
    )


def unlink(name: str) -> bool:
    """Unlink *name* if it is a regular file of this user; False if it did not exist
    or is not ours (never removed). Existing mappings stay valid."""
    if object_stat(name) is None:
        return False
    try:
        posix_ipc.unlink_shared_memory(name)
    except (posix_ipc.ExistentialError, posix_ipc.PermissionsError):
        return False
    return True


def _unlink_quietly(name: str) -> None:
    with contextlib.suppress(posix_ipc.Error):
        posix_ipc.unlink_shared_memory(name)


def list_names(prefix: str) -> list[str]:
    """Names (with a leading ``/``) of the shared-memory objects starting with *prefix*."""
    bare = prefix.lstrip("/")
    try:
        entries = os.listdir(SHM_DIR)
    except FileNotFoundError:
        return []
    return sorted("/" + e for e in entries if e.startswith(bare))


def object_stat(name: str) -> os.stat_result | None:
    """``lstat`` of a shared-memory object of this user, or None if it is gone, or is
    not a regular file this user owns (a link, a directory, another user's file:
    none of them is ever arrowshm's to use or remove)."""
    try:
        st = os.lstat(os.path.join(SHM_DIR, name.lstrip("/")))
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
        return None
    return st


def foreign(name: str) -> bool:
    """True when *name* exists but is not a regular file of this user."""
    try:
        st = os.lstat(os.path.join(SHM_DIR, name.lstrip("/")))
    except OSError:
        return False
    return not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid()


def shm_dir_bytes() -> int:
    """Size of the filesystem holding the shared-memory objects (0 if unknown)."""
    try:
        s = os.statvfs(SHM_DIR)
    except OSError:
        return 0
    return s.f_blocks * s.f_frsize


def shm_free_bytes() -> int:
    """Bytes free in the filesystem holding the shared-memory objects."""
    return _shm_free_bytes()


def _shm_free_bytes() -> int:
    try:
        s = os.statvfs(SHM_DIR)
    except OSError:
        return 0
    return s.f_bavail * s.f_frsize
