"""Shared-memory segments: create (sized with ``posix_fallocate`` so a full
filesystem is an error, not a SIGBUS), open, map, unlink.

A segment is named by a *locator*: in /dev/shm, the POSIX shared-memory name
(``/ash-<ns>-<id>``, one leading ``/`` and no other, opened with ``shm_open``
exactly as before); in any other directory (``ARROWSHM_DIR``), the file's
absolute path (``/var/tmp/big/ash-<ns>-<id>``), opened with
``open(O_NOFOLLOW)``. The registry hands out the locators of its namespace's
directory, so no caller needs to know where a namespace lives; telling the two
apart costs one string search, no system call.

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

from .._errors import (
    AccessDeniedError,
    ArrowShmError,
    NotFoundError,
    ResourceLimitError,
    ShmFullError,
)

SHM_DIR = "/dev/shm"

_SHM_FULL_HINT = (
    "free space in /dev/shm (run `arrowshm gc`, delete datasets), or give the container "
    "more shared memory (docker run --shm-size=2g …), or place the namespace in a bigger "
    "directory (ARROWSHM_DIR, docs/OPERATIONS.md)"
)


def is_path(name: str) -> bool:
    """True when locator *name* is a file path (a namespace outside /dev/shm), False
    for a POSIX shared-memory name."""
    return name.find("/", 1) > 0


def locate(directory: str, shm_name: str) -> str:
    """The locator of object *shm_name* (``/ash-…``) in *directory*."""
    return shm_name if directory == SHM_DIR else directory + shm_name


def path_of(name: str) -> str:
    """The filesystem path of locator *name*."""
    return name if is_path(name) else SHM_DIR + name


def base_name(name: str) -> str:
    """The object's own name in its directory, with a leading ``/`` (``/ash-…``)."""
    return name[name.rindex("/"):]


def directory_of(name: str) -> str:
    """The directory holding locator *name*."""
    return os.path.dirname(name) if is_path(name) else SHM_DIR


def _full_hint(directory: str) -> str:
    if directory == SHM_DIR:
        return _SHM_FULL_HINT
    return (f"free space in {directory} (run `arrowshm gc`, delete datasets), or point "
            "ARROWSHM_DIR at a directory on a bigger filesystem")


def _full_error(name: str, size: int, exc: OSError | None = None) -> ShmFullError:
    directory = directory_of(name)
    free = shm_free_bytes(directory)
    return ShmFullError(
        f"{directory} has no room for {size:,} bytes ({free:,} free) to create "
        f"{os.path.basename(name)}: " + _full_hint(directory),
        requested=size, available=free, directory=directory,
    )


class Segment:
    """One mapped shared-memory object.

    Attributes
    ----------
    name : str
        Its locator: the POSIX name with its leading ``/`` in /dev/shm, the
        absolute path of the file in any other directory.
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

        The object is built unnamed (``O_TMPFILE`` in its directory), sized, mapped
        and passed to *init*, and only then linked under *name*: a creator
        killed at any moment leaves either nothing or a segment whose header
        *init* already stamped (its creator's pid), never an anonymous
        half-made object that only an age-based grace period could reclaim.
        Where ``O_TMPFILE`` is unavailable it falls back to ``shm_open`` (an
        ``O_CREAT | O_EXCL | O_NOFOLLOW`` open of the path outside /dev/shm).

        With *populate*, the page tables are filled at mapping time
        (``MAP_POPULATE``), for a creator about to write the whole segment.

        Raises
        ------
        FileExistsError
            When *name* already exists (callers pick fresh names).
        ShmFullError
            When the namespace's directory (/dev/shm by default) cannot hold *size*
            bytes.
        AccessDeniedError
            When the directory does not let this user create files.
        """
        directory = directory_of(name)
        try:
            fd = os.open(directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, mode)
        except OSError as exc:
            if _fds_exhausted(exc):
                raise _fd_limit_error(name, exc) from exc
            if exc.errno == errno.ENOSPC:
                raise _full_error(name, size, exc) from exc
            if exc.errno in (errno.EACCES, errno.EROFS, errno.ENOENT):
                raise _dir_error(directory, exc) from exc
            # EOPNOTSUPP/EISDIR/EINVAL: a filesystem (or kernel) without O_TMPFILE;
            # EPERM: perhaps a sandbox refusing the flag (the fallback tells)
            return cls._create_named(name, size, mode=mode, populate=populate, init=init)
        try:
            seg = cls._size_and_map(fd, name, size, mode, populate)
            if init is not None:
                init(seg)
            # linkat(AT_SYMLINK_FOLLOW) of /proc's magic link names the unnamed file
            # (a dir fd makes os.link call linkat; with absolute paths it is unused)
            try:
                os.link(f"/proc/self/fd/{fd}", path_of(name), src_dir_fd=fd,
                        follow_symlinks=True)
            except FileExistsError as exc:
                raise FileExistsError(errno.EEXIST, f"shared memory {name} exists") from exc
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise _full_error(name, size, exc) from exc
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
            if is_path(name):
                fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                             | os.O_CLOEXEC, mode)
            else:
                shm = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, mode=mode)
                fd = os.dup(shm.fd)
                shm.close_fd()
        except (posix_ipc.ExistentialError, FileExistsError) as exc:
            raise FileExistsError(errno.EEXIST, f"shared memory {name} exists") from exc
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise _full_error(name, size, exc) from exc
            if _fds_exhausted(exc):
                raise _fd_limit_error(name, exc) from exc
            raise
        try:
            seg = cls._size_and_map(fd, name, size, mode, populate)
            if init is not None:
                init(seg)
        except BaseException:
            _unlink_quietly(name)
            raise
        finally:
            os.close(fd)
        return seg

    @classmethod
    def _size_and_map(cls, fd: int, name: str, size: int, mode: int, populate: bool) -> Segment:
        os.fchmod(fd, mode)  # open applies the umask; the mode asked for is the mode
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.ENOMEM, errno.EFBIG, errno.EDQUOT):
                raise _full_error(name, size, exc) from exc
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
            # a filesystem that cannot reserve blocks: size it sparse (a full disk then
            # shows as SIGBUS at first touch, as on any mmap of such a filesystem)
            os.ftruncate(fd, size)
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
        shm = None
        if is_path(name):
            fd = _open_path(name, writable)
        else:
            shm = _open_shm(name, writable)
            fd = shm.fd
        try:
            st = os.fstat(fd)
            if st.st_uid != os.geteuid() or not stat.S_ISREG(st.st_mode):
                raise AccessDeniedError(
                    f"shared memory {name} belongs to {_user(st.st_uid)}, not to you "
                    f"({_user(os.geteuid())}): arrowshm never reads, writes or removes "
                    "another user's objects; if it is not supposed to be there, ask "
                    f"its owner (or root) to remove {path_of(name)}",
                    shm_name=name, owner_uid=st.st_uid,
                )
            size = st.st_size
            if size == 0:
                raise NotFoundError(f"shared memory {name} is empty (being created)",
                                    shm_name=name)
            prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
            flags = mmap.MAP_SHARED | (getattr(mmap, "MAP_POPULATE", 0) if populate else 0)
            try:
                mm = mmap.mmap(fd, size, flags, prot)
            except OSError as exc:
                if _fds_exhausted(exc):  # mmap dups the descriptor
                    raise _fd_limit_error(name, exc) from exc
                raise
        finally:
            if shm is None:
                os.close(fd)
            else:
                shm.close_fd()
        return cls(name, mm, size, writable, stat.S_IMODE(st.st_mode))

    def __repr__(self) -> str:
        return f"Segment({self.name!r}, size={self.size})"


def _open_shm(name: str, writable: bool) -> posix_ipc.SharedMemory:
    """POSIX shared-memory object *name*, opened (``shm_open``)."""
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
    return shm


def _open_path(name: str, writable: bool) -> int:
    """A descriptor of segment file *name* (an absolute path), never through a link."""
    # (O_NONBLOCK: a FIFO planted under the name must not hang the open; fstat refuses it)
    flags = ((os.O_RDWR if writable else os.O_RDONLY) | os.O_NOFOLLOW | os.O_CLOEXEC
             | os.O_NONBLOCK)
    try:
        return os.open(name, flags)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise NotFoundError(f"shared memory {name} does not exist", shm_name=name) from exc
    except OSError as exc:
        if _fds_exhausted(exc):
            raise _fd_limit_error(name, exc) from exc
        if exc.errno == errno.ELOOP:
            raise AccessDeniedError(
                f"{name} is a symbolic link, not a segment of yours; remove it (someone "
                "else may have planted it)", shm_name=name,
            ) from exc
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise AccessDeniedError(
                f"segment {name} belongs to another user ({owner_of(name)}) and arrowshm "
                "never uses another user's objects; run as that user, or use another "
                "ARROWSHM_NAMESPACE or ARROWSHM_DIR", shm_name=name,
            ) from exc
        raise


def _dir_error(directory: str, exc: OSError) -> ArrowShmError:
    if exc.errno == errno.ENOENT:
        return NotFoundError(f"directory {directory} does not exist (ARROWSHM_DIR); create "
                             f"it (mkdir -m 700 {directory})", directory=directory)
    return AccessDeniedError(
        f"cannot create a segment in {directory}: {exc.strerror}; ARROWSHM_DIR must name a "
        "directory this user can write (a read-only or foreign directory cannot hold "
        "segments)", directory=directory, errno=exc.errno,
    )


def _user(uid: int) -> str:
    """``uid 1001 (alice)``."""
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def owner_of(name: str) -> str:
    """``uid N (user)`` of the object *name*, as ``lstat`` sees it."""
    try:
        return _user(os.lstat(path_of(name)).st_uid)
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
    if is_path(name):
        try:
            os.unlink(name)
        except OSError:
            return False
        return True
    try:
        posix_ipc.unlink_shared_memory(name)
    except (posix_ipc.ExistentialError, posix_ipc.PermissionsError):
        return False
    return True


def _unlink_quietly(name: str) -> None:
    if is_path(name):
        with contextlib.suppress(OSError):
            os.unlink(name)
        return
    with contextlib.suppress(posix_ipc.Error):
        posix_ipc.unlink_shared_memory(name)


def list_names(prefix: str, directory: str = SHM_DIR) -> list[str]:
    """Locators of the objects in *directory* whose names start with *prefix* (with
    or without its leading ``/``)."""
    bare = prefix.lstrip("/")
    try:
        entries = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(locate(directory, "/" + e) for e in entries if e.startswith(bare))


def object_stat(name: str) -> os.stat_result | None:
    """``lstat`` of a shared-memory object of this user, or None if it is gone, or is
    not a regular file this user owns (a link, a directory, another user's file:
    none of them is ever arrowshm's to use or remove)."""
    try:
        st = os.lstat(path_of(name))
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
        return None
    return st


def foreign(name: str) -> bool:
    """True when *name* exists but is not a regular file of this user."""
    try:
        st = os.lstat(path_of(name))
    except OSError:
        return False
    return not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid()


def shm_dir_bytes(directory: str = SHM_DIR) -> int:
    """Size of the filesystem holding *directory* (a namespace's objects; 0 if
    unknown)."""
    try:
        s = os.statvfs(directory)
    except OSError:
        return 0
    return s.f_blocks * s.f_frsize


def shm_free_bytes(directory: str = SHM_DIR) -> int:
    """Bytes free (to this user) in the filesystem holding *directory*."""
    try:
        s = os.statvfs(directory)
    except OSError:
        return 0
    return s.f_bavail * s.f_frsize
