"""Where a namespace keeps its objects: ``/dev/shm`` or the directory ``ARROWSHM_DIR``
names, and how every process of the namespace is made to agree on it.

A namespace lives in exactly one directory. In /dev/shm, its registry
``/dev/shm/ash-<ns>-reg`` is the evidence. Anywhere else, a small *marker*
``/dev/shm/ash-<ns>-reg.at`` (a regular 0600 file of the user, content
``ARROWSHM_DIR=<directory>\\n``) points there, so a process whose
``ARROWSHM_DIR`` is unset or different is told exactly which value to set
instead of silently making a second, empty namespace of the same name:

* a process of the default directory refuses a namespace that has a marker;
* a process of directory *D* writes the marker (or finds one naming *D*)
  before it opens or creates the registry in *D*, and refuses a marker naming
  another directory or a registry in /dev/shm.

Each side publishes its own claim before it checks the other's (the /dev/shm
registry, or the marker, is made first), so two processes starting at once
with different directories cannot both succeed: at least one sees the other's
claim (both may fail; a retry settles it). The marker is written unnamed
(``O_TMPFILE``) and linked complete, so nobody reads it half written.

/dev/shm is a tmpfs: after a reboot the marker is gone, and a registry left
on a disk directory is refused by its boot id (see ``Registry._check_header``)
with the command that removes it.

A directory other than /dev/shm is checked when a namespace context is made:
it and every directory above it must belong to this user or to root and must
not be writable by other users unless sticky (like /tmp), because whoever can
rename or replace entries there could swap a segment under a reader.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import time
from dataclasses import dataclass

from .._env import env_directory
from .._errors import (
    AccessDeniedError,
    ArrowShmError,
    ConflictError,
    CorruptSegmentError,
    InvalidArgumentError,
    NotFoundError,
)
from .._names import SHM_PREFIX, registry_shm_name, validate_namespace
from .segment import SHM_DIR, _user, object_stat, shm_dir_bytes, shm_free_bytes

__all__ = [
    "NamespaceDirectory",
    "namespace_directory",
    "agree",
    "check_directory",
    "confirm_default",
    "describe",
    "marker_name",
    "read_marker",
    "remove_marker",
]

_MARKER_KEY = "ARROWSHM_DIR="
_MARKER_MAX = 4096
_READ_TRIES = 200


def marker_name(namespace: str) -> str:
    """The POSIX name of *namespace*'s marker in /dev/shm (``/ash-<ns>-reg.at``; the
    dot keeps it apart from every segment name)."""
    return f"{SHM_PREFIX}{namespace}-reg.at"


def _marker_path(namespace: str) -> str:
    return SHM_DIR + marker_name(namespace)


def check_directory(directory: str) -> str:
    """Refuse a directory that cannot safely hold a namespace's objects; returns it.

    /dev/shm is taken as the system provides it. Any other directory must exist,
    be writable by this user, and it and every directory above it must belong to
    this user or to root and not be writable by group or others unless sticky.

    Raises
    ------
    NotFoundError
        When the directory does not exist.
    InvalidArgumentError
        When the path is not a directory.
    AccessDeniedError
        When it (or a parent) is another user's, writable by others without the
        sticky bit, or not writable by this user.
    """
    if directory == SHM_DIR:
        return directory
    euid = os.geteuid()
    try:
        st = os.lstat(directory)
    except FileNotFoundError:
        raise NotFoundError(
            f"ARROWSHM_DIR names {directory}, which does not exist: create it "
            f"(mkdir -m 700 {directory}) or point ARROWSHM_DIR at an existing directory",
            directory=directory,
        ) from None
    if not stat.S_ISDIR(st.st_mode):
        raise InvalidArgumentError(
            f"ARROWSHM_DIR names {directory}, which is not a directory",
            variable="ARROWSHM_DIR", value=directory,
        )
    path = directory
    while True:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):  # resolved when read: replaced by a link since
            raise AccessDeniedError(
                f"{path} (above ARROWSHM_DIR={directory}) became a symbolic link; "
                "arrowshm will not place segments behind a link someone can swap",
                directory=directory,
            )
        if st.st_uid not in (0, euid):
            raise AccessDeniedError(
                f"ARROWSHM_DIR={directory}: {path} belongs to {_user(st.st_uid)}, who "
                "could rename or replace the namespace's segments; use a directory of "
                "yours (or root's) on a path only you and root can change",
                directory=directory, path=path, owner_uid=st.st_uid,
            )
        if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            raise AccessDeniedError(
                f"ARROWSHM_DIR={directory}: {path} is writable by other users "
                f"(mode {stat.S_IMODE(st.st_mode):04o}) and not sticky, so they could "
                f"replace the namespace's segments; run `chmod go-w {path}` (or "
                f"`chmod +t {path}` for a shared directory like /tmp)",
                directory=directory, path=path, mode=stat.S_IMODE(st.st_mode),
            )
        if path == "/":
            break
        path = os.path.dirname(path)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise AccessDeniedError(
            f"ARROWSHM_DIR={directory} is not writable by {_user(euid)}; use a "
            "directory you can write (a read-only filesystem cannot hold segments)",
            directory=directory,
        )
    return directory


# -- the marker --------------------------------------------------------------------


def read_marker(namespace: str) -> str | None:
    """The directory *namespace*'s marker names, or None when there is no marker
    (the namespace lives in /dev/shm, or does not exist yet).

    Raises
    ------
    AccessDeniedError
        When the marker is not a regular file of this user.
    CorruptSegmentError
        When it does not hold ``ARROWSHM_DIR=<absolute path>``.
    """
    path = _marker_path(namespace)
    for _ in range(_READ_TRIES):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise AccessDeniedError(
                f"{path} is not a marker of yours ({exc.strerror}); remove it (someone else "
                "may have planted it) or use another ARROWSHM_NAMESPACE", shm_name=path,
            ) from exc
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
                raise AccessDeniedError(
                    f"{path} belongs to {_user(st.st_uid)}, not to you: arrowshm never "
                    "trusts another user's files; ask its owner (or root) to remove it, or "
                    "use another ARROWSHM_NAMESPACE", shm_name=path, owner_uid=st.st_uid,
                )
            raw = os.read(fd, _MARKER_MAX + 1)
        finally:
            os.close(fd)
        if raw:
            break
        time.sleep(0.005)  # made by the fallback below, being written
    text = raw.decode("utf-8", "replace")
    value = text[len(_MARKER_KEY):].rstrip("\n")
    if (not text.startswith(_MARKER_KEY) or len(raw) > _MARKER_MAX
            or not os.path.isabs(value) or "\n" in value):
        raise CorruptSegmentError(
            f"{path} is not an arrowshm directory marker; remove it if no process of "
            f"namespace {namespace!r} runs", shm_name=path,
        )
    return value


def _write_marker(namespace: str, directory: str) -> bool:
    """Create the marker naming *directory*; False when one already exists."""
    data = f"{_MARKER_KEY}{directory}\n".encode()
    path = _marker_path(namespace)
    try:
        fd = os.open(SHM_DIR, os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o600)
    except OSError:
        fd = -1
    if fd >= 0:
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, data)
            try:
                os.link(f"/proc/self/fd/{fd}", path, src_dir_fd=fd, follow_symlinks=True)
            except FileExistsError:
                return False
        finally:
            os.close(fd)
        return True
    # no O_TMPFILE: write a private temporary name, then link it (atomic, complete)
    tmp = f"{SHM_DIR}/.{marker_name(namespace)[1:]}.{secrets.token_hex(6)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def remove_marker(namespace: str) -> bool:
    """Remove *namespace*'s marker if it is a regular file of this user."""
    if object_stat(marker_name(namespace)) is None:
        return False
    try:
        os.unlink(_marker_path(namespace))
    except OSError:
        return False
    return True


def _registry_in_shm(namespace: str) -> bool:
    return object_stat(registry_shm_name(namespace)) is not None


def _mismatch(namespace: str, ours: str, theirs: str) -> ConflictError:
    if theirs == SHM_DIR:
        fix = "Unset ARROWSHM_DIR"
        stale = (f"if no process uses the namespace there any more, remove its objects "
                 f"(rm {SHM_DIR}/ash-{namespace}-*)")
    else:
        fix = f"Set ARROWSHM_DIR={theirs}"
        stale = (f"if no process uses {theirs} any more, remove the marker "
                 f"(rm {_marker_path(namespace)})")
    return ConflictError(
        f"namespace {namespace!r} keeps its segments in {theirs}, but this process looks "
        f"in {ours} (ARROWSHM_DIR{'=' + ours if ours != SHM_DIR else ' unset'}): every "
        f"process of a namespace must use the same directory. {fix} in this process's "
        f"environment, or use another ARROWSHM_NAMESPACE; {stale}",
        namespace=namespace, directory=ours, expected=theirs,
    )


def agree(namespace: str, directory: str) -> None:
    """Make sure *namespace* lives in *directory* before its registry there is opened
    or created (the protocol of the module docstring). Called once per process per
    namespace; in /dev/shm it costs one failed ``open``.

    Raises
    ------
    ConflictError
        When the namespace lives in another directory: the message names the value
        of ``ARROWSHM_DIR`` to set.
    AccessDeniedError, CorruptSegmentError
        When the marker is another user's file, or not a marker.
    """
    recorded = read_marker(namespace)
    if directory == SHM_DIR:
        if recorded is not None:
            raise _mismatch(namespace, directory, recorded)
        return
    while recorded is None:
        if _registry_in_shm(namespace):
            raise _mismatch(namespace, directory, SHM_DIR)
        if _write_marker(namespace, directory):
            if _registry_in_shm(namespace):  # made meanwhile by a /dev/shm process
                remove_marker(namespace)
                raise _mismatch(namespace, directory, SHM_DIR)
            return
        recorded = read_marker(namespace)
    if recorded != directory:
        raise _mismatch(namespace, directory, recorded)


def confirm_default(namespace: str) -> None:
    """After creating *namespace*'s registry in /dev/shm: check that no process of
    another directory claimed the namespace meanwhile.

    Raises
    ------
    ConflictError
        When one did (the caller removes the registry it made).
    """
    recorded = read_marker(namespace)
    if recorded is not None:
        raise _mismatch(namespace, SHM_DIR, recorded)


# -- for doctor and operators ---------------------------------------------------


@dataclass(frozen=True)
class NamespaceDirectory:
    """Where a namespace's objects live, as seen from this process.

    Attributes
    ----------
    namespace : str
    directory : str
        Where this process looks: its context's directory, or ``ARROWSHM_DIR``
        (default /dev/shm) when it has not used the namespace yet.
    recorded : str or None
        Where the namespace lives: the directory its marker names, /dev/shm when
        its registry is there, None when it does not exist yet.
    problem : str or None
        Why this process could not use the namespace there (a mismatch, an
        unusable directory, a bad ``ARROWSHM_DIR``), with the fix; None if none.
    total_bytes, free_bytes : int
        Size and free bytes of the filesystem holding ``directory``.
    """

    namespace: str
    directory: str
    recorded: str | None
    problem: str | None
    total_bytes: int
    free_bytes: int

    @property
    def ok(self) -> bool:
        """No problem: this process and the namespace agree on a usable directory."""
        return self.problem is None


def describe(namespace: str, directory: str | None = None) -> NamespaceDirectory:
    """Which directory *namespace* uses and whether a process looking in *directory*
    (default: ``ARROWSHM_DIR`` read now) agrees; read only, nothing is created.
    :func:`arrowshm._shm.context.describe_namespace` passes this process's
    context's directory.

    Raises
    ------
    InvalidNameError
        When *namespace* is malformed.
    """
    validate_namespace(namespace)
    problem: str | None = None
    if directory is None:
        try:
            directory = env_directory()
        except ArrowShmError as exc:
            directory, problem = SHM_DIR, str(exc)
    try:
        check_directory(directory)
    except ArrowShmError as exc:
        problem = problem or str(exc)
    recorded: str | None = None
    try:
        recorded = read_marker(namespace)
    except ArrowShmError as exc:
        problem = problem or str(exc)
    if recorded is None and _registry_in_shm(namespace):
        recorded = SHM_DIR
    if problem is None and recorded is not None and recorded != directory:
        problem = str(_mismatch(namespace, directory, recorded))
    return NamespaceDirectory(namespace=namespace, directory=directory, recorded=recorded,
                              problem=problem, total_bytes=shm_dir_bytes(directory),
                              free_bytes=shm_free_bytes(directory))


def namespace_directory(namespace: str) -> str:
    """The directory *namespace*'s objects are in (or would be made in): the one its
    marker names, else /dev/shm when its registry is there, else ``ARROWSHM_DIR``.
    Never raises for a bad marker or variable (it falls back to /dev/shm): for
    listing and cleaning up (:func:`arrowshm._shm.context.namespace_dir` asks this
    process's context first)."""
    with contextlib.suppress(ArrowShmError):
        recorded = read_marker(namespace)
        if recorded is not None:
            return recorded
    if _registry_in_shm(namespace):
        return SHM_DIR
    try:
        return env_directory()
    except ArrowShmError:
        return SHM_DIR

