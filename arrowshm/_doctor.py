"""``arrowshm doctor``: inspect the machine and a namespace, say what is wrong and how
to fix it.

Each check yields a :class:`DoctorCheck` (``OK``, ``WARN`` or ``FAIL``, a message
and the exact fix); :func:`doctor` returns them in a :class:`DoctorReport`,
which prints as aligned text, renders as HTML in a notebook and serializes to
JSON (``arrowshm doctor --json``, ``GET /v1/doctor``). Exit status of the CLI:
0 when every check is OK, 1 with a warning, 2 with a failure.

Nothing here changes anything: the registry and segments are mapped read-only
or read without a lock, ``gc`` is previewed (:func:`arrowshm._shm.gc.preview`),
no registry is created for a namespace that has none, and this process starts
no housekeeping thread. Importing this module is cheap (the standard library
only); the data plane is imported inside :func:`doctor`.

The checks (docs/OPERATIONS.md describes each, with what WARN and FAIL mean):

=================  ===========================================================
``directory``      the segments' directory exists, is writable, is sticky
``shm_size``       its size and free space; Docker's 64 MB default
``container``      whether this runs in a container (informational)
``o_tmpfile``      ``O_TMPFILE`` works there (crash-proof segment creation)
``pid_namespace``  registries in the directory made in another PID namespace
``open_files``     ``RLIMIT_NOFILE`` against the mappings a namespace needs
``numba_cache``    the kernels' cache directory is writable
``namespace``      the namespace's registry: readable, capacity left
``stale_objects``  what ``arrowshm gc`` would reclaim now (a dry run)
``spares``         spare segments kept for reuse, and their bound
``quota``          the namespace's quota and its headroom
``service``        the ``arrowshm serve`` socket, and whether it answers
=================  ===========================================================
"""

from __future__ import annotations

import contextlib
import errno
import html
import json
import os
import resource
import socket as _socket
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._client import _check_peer, _check_socket_file, check_private_dir, runtime_dir
from ._errors import (
    AccessDeniedError,
    ArrowShmError,
    CorruptSegmentError,
    FormatVersionError,
    InvalidNameError,
)
from ._names import SHM_PREFIX, current_namespace, registry_shm_name, validate_namespace
from ._proc import boot_id, pid_namespace
from ._units import human_bytes

__all__ = ["DoctorCheck", "DoctorReport", "doctor"]

OK, WARN, FAIL = "OK", "WARN", "FAIL"
_RANK = {OK: 0, WARN: 1, FAIL: 2}
FAIL_EXIT = _RANK[FAIL]
_MIB = 1 << 20
_GIB = 1 << 30
DOCKER_DEFAULT_SHM = 64 * _MIB
"""``/dev/shm`` of a Docker container unless ``--shm-size`` says otherwise."""
SMALL_SHM = 512 * _MIB
"""Below this a directory's size draws a warning."""
LOW_FREE = 16 * _MIB
"""Below this much free space, puts fail now: a failure."""
FD_BASELINE = 64
"""Descriptors a Python process with pyarrow uses besides its mappings."""
FD_COMFORT = 1024
"""A soft ``RLIMIT_NOFILE`` below this draws a warning."""


@dataclass(frozen=True)
class DoctorCheck:
    """One check of :func:`arrowshm.doctor`.

    Attributes
    ----------
    name : str
        Stable identifier (``shm_size``, ``open_files``, …).
    status : str
        ``"OK"``, ``"WARN"`` or ``"FAIL"``.
    message : str
        What was found.
    fix : str
        What to do about a WARN or FAIL (commands, config snippets); empty when OK.
    details : dict
        The facts behind the verdict, for machines (sizes in bytes, counts, paths).
    """

    name: str
    status: str
    message: str
    fix: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the check."""
        return {"name": self.name, "status": self.status, "message": self.message,
                "fix": self.fix, "details": self.details}


class DoctorReport:
    """What :func:`arrowshm.doctor` found: a list of :class:`DoctorCheck`.

    Iterating yields the checks; ``report["quota"]`` is the check of that name.
    Prints as aligned text (``OK``/``WARN``/``FAIL``, message, fix), renders as an
    HTML table in Jupyter, and :meth:`to_dict` / :meth:`to_json` give the JSON
    that ``arrowshm doctor --json`` prints.

    Attributes
    ----------
    namespace : str
        The namespace inspected.
    directory : str
        The directory holding its segments.
    checks : list of DoctorCheck
    """

    def __init__(self, namespace: str, directory: str, checks: list[DoctorCheck]) -> None:
        self.namespace = namespace
        self.directory = directory
        self.checks = checks

    @property
    def status(self) -> str:
        """The worst status of any check."""
        return max((c.status for c in self.checks), key=_RANK.__getitem__, default=OK)

    @property
    def exit_code(self) -> int:
        """0 (all OK), 1 (a warning) or 2 (a failure): the CLI's exit status."""
        return _RANK[self.status]

    def __iter__(self) -> Iterator[DoctorCheck]:
        return iter(self.checks)

    def __len__(self) -> int:
        return len(self.checks)

    def __getitem__(self, name: str) -> DoctorCheck:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """``{"namespace", "directory", "status", "exit_code", "checks": [...]}``."""
        return {"namespace": self.namespace, "directory": self.directory,
                "status": self.status, "exit_code": self.exit_code,
                "checks": [c.to_dict() for c in self.checks]}

    def to_json(self, indent: int | None = 2) -> str:
        """:meth:`to_dict` as JSON text."""
        return json.dumps(self.to_dict(), indent=indent, default=str)

    def _summary(self) -> str:
        warns = sum(c.status == WARN for c in self.checks)
        fails = sum(c.status == FAIL for c in self.checks)
        return (f"arrowshm doctor: namespace {self.namespace!r}, directory {self.directory}: "
                f"{self.status} ({fails} failed, {warns} warning{'s' if warns != 1 else ''}, "
                f"{len(self.checks)} checks)")

    def __repr__(self) -> str:
        width = max((len(c.name) for c in self.checks), default=0)
        lines = [self._summary()]
        pad = " " * (6 + width + 2)
        for c in self.checks:
            msg = c.message.replace("\n", "\n" + pad)
            lines.append(f"{c.status:<4}  {c.name:<{width}}  {msg}")
            if c.fix:
                fix_lines = c.fix.splitlines()
                lines.append(f"{pad}fix: {fix_lines[0]}")
                lines += [f"{pad}     {line}" for line in fix_lines[1:]]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        colors = {OK: "#2e7d32", WARN: "#ef6c00", FAIL: "#c62828"}
        rows = "".join(
            f'<tr><td style="color:{colors[c.status]};font-weight:bold">{c.status}</td>'
            f"<td><code>{html.escape(c.name)}</code></td>"
            f'<td style="text-align:left">{html.escape(c.message)}</td>'
            f'<td style="text-align:left">'
            + (f"<pre style=\"margin:0\">{html.escape(c.fix)}</pre>" if c.fix else "")
            + "</td></tr>"
            for c in self.checks
        )
        return (f"<div><b>{html.escape(self._summary())}</b><table><thead><tr><th>status</th>"
                f"<th>check</th><th>found</th><th>fix</th></tr></thead><tbody>{rows}</tbody>"
                "</table></div>")


# -- facts of the machine --------------------------------------------------------------------


def _directory(namespace: str) -> str:
    """The directory holding *namespace*'s registry and segments (``ARROWSHM_DIR``)."""
    from ._shm.context import namespace_dir

    return namespace_dir(namespace)


def _mount_of(path: str) -> tuple[str, str, str]:
    """(mount point, filesystem type, options) of the mount holding *path*."""
    real = os.path.realpath(path)
    best = ("/", "?", "")
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 4:
                    continue
                point = parts[1].replace("\\040", " ")
                inside = real == point or real.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best[0]):  # (the last of equals is on top)
                    best = (point, parts[2], parts[3])
    except OSError:
        pass
    return best


def _ram_bytes() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError):
        return 0


def _memory_limit() -> int | None:
    """This cgroup's memory limit in bytes (v2, else v1), None when unlimited/unknown."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            raw = Path(path).read_text().strip()
        except OSError:
            continue
        if raw.isdigit() and int(raw) < 1 << 60:
            return int(raw)
        return None
    return None


def container_evidence() -> list[str]:
    """Why this process looks like it runs in a container (empty: it does not)."""
    found = []
    if os.path.exists("/.dockerenv"):
        found.append("/.dockerenv exists (Docker)")
    if os.path.exists("/run/.containerenv"):
        found.append("/run/.containerenv exists (Podman)")
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        found.append("KUBERNETES_SERVICE_HOST is set (Kubernetes)")
    try:
        cgroup = Path("/proc/1/cgroup").read_text()
    except OSError:
        cgroup = ""
    for word in ("kubepods", "docker", "containerd", "libpod", "lxc"):
        if word in cgroup:
            found.append(f"/proc/1/cgroup mentions {word}")
            break
    return found


def _suggested_size(ram: int) -> int:
    """A /dev/shm size to suggest: 8 GiB, or half of RAM if less, at least 1 GiB."""
    half = (ram // 2) // _GIB * _GIB if ram else 8 * _GIB
    return max(_GIB, min(8 * _GIB, half))


def _size_fix(directory: str, ram: int) -> str:
    g = _suggested_size(ram) // _GIB
    return (
        f"give it more memory (here {g} GiB; pick what your datasets need):\n"
        f"  docker run --shm-size={g}g IMAGE ...\n"
        "  docker compose:   services: {worker: {shm_size: \"" + f"{g}gb" + "\"}}\n"
        "  Kubernetes pod:   volumes: [{name: dshm, emptyDir: {medium: Memory, "
        f"sizeLimit: {g}Gi}}}}]\n"
        "                    volumeMounts: [{name: dshm, mountPath: /dev/shm}]\n"
        f"  a host:           mount -o remount,size={g}g {directory}\n"
        "  or point ARROWSHM_DIR at a bigger tmpfs (every process of the namespace).\n"
        "A memory-backed volume is RAM: a tmpfs without size= holds at most half of RAM "
        "(the kernel's default), an emptyDir of medium Memory is bounded by its sizeLimit "
        "(else by the pod's memory limit), and its pages count against the container's "
        "memory limit: above that limit, filling it gets the container OOM-killed "
        "instead of a ShmFullError."
    )


# -- the checks ------------------------------------------------------------------------------


def _check_directory(namespace: str, directory: str) -> DoctorCheck:
    from ._shm.context import describe_namespace

    where = describe_namespace(namespace)
    if where.problem is not None:
        recorded = where.recorded
        fix = ("every process of the namespace must use the same directory: "
               + (f"ARROWSHM_DIR={recorded}" if recorded and recorded != "/dev/shm" else
                  "unset ARROWSHM_DIR" if recorded else
                  "point ARROWSHM_DIR at a directory of yours (see the message)")
               + (f" (this process looks in {where.directory})" if recorded else ""))
        return DoctorCheck("directory", FAIL, where.problem, fix,
                           {"path": where.directory, "recorded": recorded})
    try:
        st = os.stat(directory)
    except OSError as exc:
        return DoctorCheck(
            "directory", FAIL, f"{directory} is not usable: {exc.strerror}",
            f"create it (mkdir -p {directory}; a tmpfs: mount -t tmpfs -o size=8g tmpfs "
            f"{directory}), or point ARROWSHM_DIR at a directory that exists",
            {"path": directory})
    point, fstype, opts = _mount_of(directory)
    mode = stat.S_IMODE(st.st_mode)
    details: dict[str, Any] = {"path": directory, "mount_point": point, "fstype": fstype,
                               "mode": f"{mode:04o}"}
    if not stat.S_ISDIR(st.st_mode):
        return DoctorCheck("directory", FAIL, f"{directory} is not a directory",
                           "point ARROWSHM_DIR at a directory", details)
    writable = os.access(directory, os.W_OK | os.X_OK)
    details["writable"] = writable
    what = f"{directory}: {fstype} mounted at {point} ({opts}), mode {mode:04o}"
    if not writable:
        ro = "ro" in opts.split(",")
        return DoctorCheck(
            "directory", FAIL, what + (": read-only filesystem" if ro else ": not writable "
                                       "by this user") + "; no segment can be created",
            f"mount -o remount,rw {point}" if ro else
            f"chmod 1777 {directory} (as root), or point ARROWSHM_DIR at a directory of yours",
            details)
    if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
        return DoctorCheck(
            "directory", WARN,
            what + ": writable by every user without the sticky bit, so any user may remove "
                   "(unlink) your segments",
            f"chmod 1777 {directory} (as root; /dev/shm is normally drwxrwxrwt)", details)
    return DoctorCheck("directory", OK, what + ", writable", "", details)


def _check_size(directory: str, in_container: list[str]) -> DoctorCheck:
    try:
        s = os.statvfs(directory)
    except OSError as exc:
        return DoctorCheck("shm_size", FAIL, f"cannot stat {directory}: {exc.strerror}",
                           "see the directory check", {})
    total, free = s.f_blocks * s.f_frsize, s.f_bavail * s.f_frsize
    ram = _ram_bytes()
    limit = _memory_limit()
    _, fstype, _ = _mount_of(directory)
    details: dict[str, Any] = {"total_bytes": total, "free_bytes": free, "ram_bytes": ram,
                               "memory_limit_bytes": limit, "fstype": fstype,
                               "docker_default": total == DOCKER_DEFAULT_SHM}
    what = (f"{directory} holds {human_bytes(total)}, {human_bytes(free)} free "
            f"(RAM {human_bytes(ram)}")
    what += f", memory limit {human_bytes(limit)})" if limit else ")"
    if fstype not in ("tmpfs", "ramfs", "hugetlbfs", "?"):
        what += (f"; a {fstype} (disk) filesystem: segments are read through the page cache "
                 "and survive no reboot")
    if limit and total > limit and fstype in ("tmpfs", "ramfs"):
        what += ("; its size is above this cgroup's memory limit: filling it may get the "
                 "container OOM-killed before a ShmFullError")
    if total == 0:
        if fstype == "ramfs":
            return DoctorCheck(
                "shm_size", WARN, what + ": a ramfs has no size limit, so filling it "
                "exhausts RAM instead of raising ShmFullError",
                f"use a tmpfs with a size instead: mount -t tmpfs -o size=8g tmpfs {directory}",
                details)
        return DoctorCheck("shm_size", WARN, what + ": its size is unknown", "", details)
    if free < LOW_FREE:
        fix = ("free space now: `arrowshm gc` (what dead processes left), `arrowshm rm NAME` "
               f"(datasets you no longer need), `du -sh {directory}/* | sort -h` (what else "
               "fills it); or " + _size_fix(directory, ram))
        return DoctorCheck(
            "shm_size", FAIL,
            what + f": less than {human_bytes(LOW_FREE)} free, so puts fail with ShmFullError",
            fix, details)
    if total == DOCKER_DEFAULT_SHM:
        where = "; ".join(in_container) or "no other sign of a container found"
        return DoctorCheck(
            "shm_size", WARN,
            what + ": exactly 64 MiB, the /dev/shm Docker gives a container by default "
            f"({where}); a put larger than that raises ShmFullError",
            _size_fix(directory, ram), details)
    if total < SMALL_SHM:
        return DoctorCheck(
            "shm_size", WARN,
            what + f": below {human_bytes(SMALL_SHM)}, only small tables fit",
            _size_fix(directory, ram), details)
    if free < total // 10:
        return DoctorCheck(
            "shm_size", WARN, what + ": over 90% used",
            "`arrowshm gc`, `arrowshm rm NAME` for datasets you no longer need, "
            f"`du -sh {directory}/* | sort -h` for what else fills it; or "
            + _size_fix(directory, ram), details)
    return DoctorCheck("shm_size", OK, what, "", details)


def _check_container(found: list[str]) -> DoctorCheck:
    if not found:
        return DoctorCheck("container", OK, "not in a container (no /.dockerenv, "
                           "/run/.containerenv, KUBERNETES_SERVICE_HOST or container cgroup)",
                           "", {"container": False, "evidence": []})
    return DoctorCheck(
        "container", OK,
        "in a container: " + "; ".join(found) + ". Processes in other containers share "
        "datasets only with the same /dev/shm (--ipc), PID namespace (--pid) and uid",
        "", {"container": True, "evidence": found})


def _check_o_tmpfile(directory: str) -> DoctorCheck:
    flag = getattr(os, "O_TMPFILE", 0)
    details: dict[str, Any] = {"supported": False}
    if not flag:
        return DoctorCheck(
            "o_tmpfile", WARN, "this platform has no O_TMPFILE: segments are created by "
            "name, then sized", "", details)
    try:
        fd = os.open(directory, flag | os.O_RDWR, 0o600)
    except OSError as exc:
        details["errno"] = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        if exc.errno in (errno.EACCES, errno.EROFS, errno.ENOENT, errno.EPERM):
            return DoctorCheck("o_tmpfile", FAIL,
                               f"cannot create a file in {directory}: {exc.strerror}",
                               "see the directory check", details)
        _, fstype, _ = _mount_of(directory)
        return DoctorCheck(
            "o_tmpfile", WARN,
            f"{directory} ({fstype}) does not support O_TMPFILE ({exc.strerror}): segments "
            "are created by name and then sized, so a creator killed in between leaves an "
            "empty object that gc removes only after 60 s",
            "put the namespace on tmpfs (ARROWSHM_DIR, or /dev/shm), which supports it",
            details)
    os.close(fd)
    details["supported"] = True
    return DoctorCheck("o_tmpfile", OK, f"O_TMPFILE works in {directory}: a creator killed "
                       "at any moment leaves no half-made segment", "", details)


@dataclass
class _RegistryFacts:
    namespace: str
    uid: int
    pid_ns: int
    boot: tuple[int, int]
    ok: bool  # readable header of ours


def _registries(directory: str) -> list[_RegistryFacts]:
    """The header facts of every arrowshm registry in *directory* (read-only; other
    users' registries are listed by owner only)."""
    from ._shm.registry import peek_identity
    from ._shm.segment import Segment, locate

    out = []
    try:
        entries = sorted(os.listdir(directory))
    except OSError:
        return []
    for entry in entries:
        if not (entry.startswith(SHM_PREFIX[1:]) and entry.endswith("-reg")):
            continue
        ns = entry[len(SHM_PREFIX) - 1: -len("-reg")]
        try:
            st = os.lstat(os.path.join(directory, entry))
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            out.append(_RegistryFacts(ns, st.st_uid, 0, (0, 0), False))
            continue
        try:
            seg = Segment.open(locate(directory, "/" + entry))
        except Exception:  # (gone, being created, refused: nothing to judge)
            continue
        ident = peek_identity(seg)
        if ident is None:
            continue
        out.append(_RegistryFacts(ns, st.st_uid, ident.pid_ns, ident.boot, True))
    return out


def _ns_text(inode: int) -> str:
    return f"pid:[{inode}]" if inode else "a PID namespace unknown to its creator (no /proc)"


def _check_pid_namespace(namespace: str, directory: str) -> DoctorCheck:
    ours, boot = pid_namespace(), boot_id()
    regs = _registries(directory)
    mine = [r for r in regs if r.ok]
    alien = [r for r in mine if r.pid_ns != ours]
    rebooted = [r for r in mine if r.pid_ns == ours and r.boot != boot]
    others = sorted({r.uid for r in regs if not r.ok})
    details: dict[str, Any] = {
        "pid_namespace": ours, "registries": len(mine),
        "other_pid_namespaces": {r.namespace: r.pid_ns for r in alien},
        "before_reboot": [r.namespace for r in rebooted], "other_users": others}
    this = next((r for r in mine if r.namespace == namespace), None)
    share = ("share the PID namespace as well as /dev/shm: docker run --pid=host or "
             "--pid=container:NAME (with --ipc=container:NAME), Kubernetes "
             "shareProcessNamespace: true; or give each container its own "
             "ARROWSHM_NAMESPACE")
    tail = f" (and {len(others)} other user(s)' registries, never used)" if others else ""
    if this is not None and this.pid_ns != ours:
        return DoctorCheck(
            "pid_namespace", FAIL,
            f"namespace {namespace!r} was made in another PID namespace ({_ns_text(this.pid_ns)}; "
            f"this process is in pid:[{ours}]): processes sharing {directory} do not see "
            "each other's pids, so this process cannot join it (AccessDeniedError)",
            share + f"; if that container is gone: rm {directory}/ash-{namespace}-*", details)
    if this is not None and this.boot != boot:
        return DoctorCheck(
            "pid_namespace", FAIL,
            f"namespace {namespace!r} was made before the last reboot: its pids mean nothing "
            "now and no process can join it",
            f"rm {directory}/ash-{namespace}-*  (nothing of it can still be in use)", details)
    found: list[str] = []
    fixes: list[str] = []
    if alien:
        names = ", ".join(f"{r.namespace} ({_ns_text(r.pid_ns)})" for r in alien)
        found.append(
            f"{len(alien)} namespace(s) in {directory} were made in another PID namespace "
            f"than this one (pid:[{ours}]): {names}. Processes of other containers share this "
            "directory without sharing pids; they cannot share those namespaces with this one")
        fixes.append(share + "; registries of containers that are gone: rm " + " ".join(
            f"{directory}/ash-{r.namespace}-*" for r in alien))
    if rebooted:
        found.append(f"{len(rebooted)} namespace(s) in {directory} date from before the last "
                     "reboot: " + ", ".join(r.namespace for r in rebooted))
        fixes.append("nothing of them can still be in use: rm " + " ".join(
            f"{directory}/ash-{r.namespace}-*" for r in rebooted))
    if found:
        return DoctorCheck("pid_namespace", WARN, "; ".join(found) + tail, "\n".join(fixes),
                           details)
    return DoctorCheck(
        "pid_namespace", OK,
        f"all {len(mine)} registr{'y' if len(mine) == 1 else 'ies'} of yours in {directory} "
        f"were made in this PID namespace (pid:[{ours}]) and this boot" + tail, "", details)


def _fd_count(pid: str) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def _soft_nofile(pid: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                value = line.split()[3]
                return None if value == "unlimited" else int(value)
    except (OSError, IndexError, ValueError):
        pass
    return None


def _mappers(prefix: str) -> dict[int, int]:
    """pid -> mappings of files whose path starts with *prefix*, for this user's processes."""
    out: dict[int, int] = {}
    uid = os.geteuid()
    me = str(os.getpid())
    with contextlib.suppress(OSError):
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or pid == me:
                continue
            try:
                if os.stat(f"/proc/{pid}").st_uid != uid:
                    continue
                with open(f"/proc/{pid}/maps", "rb") as f:
                    seen = {line.split(None, 5)[-1] for line in f if prefix.encode() in line}
            except (OSError, IndexError):
                continue
            if seen:
                out[int(pid)] = len(seen)
    return out


def _check_open_files(namespace: str, directory: str) -> DoctorCheck:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    inf = resource.RLIM_INFINITY
    prefix = f"{SHM_PREFIX[1:]}{namespace}-"
    try:
        objects = sum(e.startswith(prefix) for e in os.listdir(directory))
    except OSError:
        objects = 0
    need = objects + FD_BASELINE
    mappers = _mappers(os.path.join(directory, prefix))
    crowded = []
    for pid, maps in sorted(mappers.items()):
        limit = _soft_nofile(str(pid))
        used = _fd_count(str(pid))
        if limit and used >= limit * 0.8:
            crowded.append(f"pid {pid} ({maps} mappings, {used} of {limit} descriptors)")
    try:
        max_maps = int(Path("/proc/sys/vm/max_map_count").read_text())
    except (OSError, ValueError):
        max_maps = 0
    details: dict[str, Any] = {
        "soft": None if soft == inf else soft, "hard": None if hard == inf else hard,
        "namespace_objects": objects, "needed": need, "max_map_count": max_maps,
        "mapping_processes": {str(p): n for p, n in mappers.items()}}
    shown = "unlimited" if soft == inf else f"{soft:,}"
    what = (f"ulimit -n is {shown} (hard {'unlimited' if hard == inf else f'{hard:,}'}); "
            f"every table or stream a process holds keeps one descriptor (its mapping): "
            f"namespace {namespace!r} has {objects:,} object(s), so a process holding all of "
            f"them needs about {need:,}; {len(mappers)} other process(es) map it now")
    target = max(65536, 4 * need)
    raise_it = (f"ulimit -n {hard if hard != inf and hard >= target else target}  (in the "
                "shell that starts the processes)" + (
                    "" if hard == inf or hard >= need else
                    f"; the hard limit {hard:,} is too low too: raise it in "
                    f"/etc/security/limits.conf (`<user> - nofile {target}`), systemd "
                    f"LimitNOFILE={target}, docker run --ulimit nofile={target}:{target}"))
    if soft != inf and soft < need:
        return DoctorCheck(
            "open_files", FAIL, what + f": {soft:,} is not enough (ResourceLimitError)",
            raise_it, details)
    if crowded:
        return DoctorCheck(
            "open_files", WARN, what + "; near their limit: " + "; ".join(crowded),
            "raise their limit (" + raise_it + ") and restart them, or have them drop "
            "tables they no longer need", details)
    if soft != inf and soft < FD_COMFORT:
        return DoctorCheck(
            "open_files", WARN, what + f": below {FD_COMFORT:,}, a process holding many "
            "tables or versions runs out (ResourceLimitError)", raise_it, details)
    return DoctorCheck("open_files", OK, what, "", details)


def _check_numba_cache() -> DoctorCheck:
    from .kernels import _cache

    preferred = _cache._candidates(_cache._STAMP)[0]
    source = ("NUMBA_CACHE_DIR" if _cache._numba_cache_dir()
              else "XDG_CACHE_HOME" if os.environ.get("XDG_CACHE_HOME") else "~/.cache")
    preferred_ok = _cache._usable(preferred)
    chosen = _cache.cache_dir()
    entries = len(list(chosen.glob("*.nbi"))) if chosen is not None else 0
    details: dict[str, Any] = {"preferred": str(preferred), "preferred_writable": preferred_ok,
                               "directory": None if chosen is None else str(chosen),
                               "cached_kernels": entries, "from": source}
    warm = (f"{entries} kernel index file(s): warm" if entries else
            "empty: the next process compiles the kernels (seconds) and caches them")
    fix = (f"make {preferred.parent} writable by this user, or set NUMBA_CACHE_DIR to a "
           "writable directory of yours (e.g. NUMBA_CACHE_DIR=$HOME/.cache/numba), "
           "in every process's environment")
    if chosen is None:
        return DoctorCheck(
            "numba_cache", FAIL,
            f"no writable cache directory for the kernels ({preferred}, from {source}, and "
            "the private one under the temporary directory both fail): every process "
            "compiles them again, seconds at start-up", fix, details)
    if not preferred_ok or chosen != preferred:
        return DoctorCheck(
            "numba_cache", WARN,
            f"{preferred} (from {source}) is not writable: kernels are cached in {chosen} "
            f"instead ({warm}), which other environments do not find", fix, details)
    return DoctorCheck("numba_cache", OK, f"kernels cached in {chosen} ({warm})", "", details)


def _registry_exists(namespace: str, directory: str) -> bool:
    from ._shm.segment import locate, object_stat

    return object_stat(locate(directory, registry_shm_name(namespace))) is not None


def _check_namespace(namespace: str, directory: str) -> tuple[DoctorCheck, Any]:
    """The registry check, and a context to read the namespace through (None: none)."""
    from ._shm import layout as L
    from ._shm.context import Context

    if not _registry_exists(namespace, directory):
        return DoctorCheck(
            "namespace", OK, f"namespace {namespace!r} has no registry in {directory} yet "
            "(the first put or reader creates it): nothing more to inspect", "",
            {"exists": False}), None
    try:
        # (not context(): this process starts no housekeeping thread)
        ctx = Context(namespace, directory)
        reg = ctx.registry
        kinds = [v.kind for v in reg.entries()]
        used = len(kinds)
    except ArrowShmError as exc:
        return DoctorCheck("namespace", FAIL, f"namespace {namespace!r}: {exc}",
                           _error_fix(exc, namespace, directory),
                           {"exists": True, "error": type(exc).__name__}), None
    datasets = sum(k == L.KIND_DATASET for k in kinds)
    cap = reg.capacity
    details = {"exists": True, "entries": used, "capacity": cap, "datasets": datasets,
               "streams": len(kinds) - datasets, "registry": reg.shm_name}
    what = (f"namespace {namespace!r}: registry {directory}{registry_shm_name(namespace)}, "
            f"{datasets} dataset(s), {len(kinds) - datasets} stream(s), {used:,} of {cap:,} "
            "entries used")
    if used >= cap * 0.9:
        return DoctorCheck(
            "namespace", WARN, what + ": nearly full, new names will raise RegistryFullError",
            "delete names you no longer need (`arrowshm rm NAME`, `arrowshm gc` for expired "
            "ones); or, with every process of the namespace stopped, remove the registry "
            f"(rm {directory}/ash-{namespace}-*) and start again with a larger "
            "ARROWSHM_REGISTRY_CAPACITY", details), ctx
    return DoctorCheck("namespace", OK, what, "", details), ctx


def _error_fix(exc: BaseException, namespace: str, directory: str) -> str:
    if isinstance(exc, FormatVersionError):
        return ("run the same arrowshm version in every process of the namespace, or use "
                "another ARROWSHM_NAMESPACE")
    if isinstance(exc, CorruptSegmentError):
        return ("with no arrowshm process of the namespace running: "
                f"rm {directory}/ash-{namespace}-reg")
    if isinstance(exc, AccessDeniedError):
        return ("see the message: another user's or another PID namespace's registry is never "
                "joined; use another ARROWSHM_NAMESPACE, or remove it as its owner")
    return "see the message"


def _check_stale(ctx: Any, namespace: str, directory: str) -> DoctorCheck:
    from ._shm import gc as _gc
    from ._streams import inspect as _inspect

    p = _gc.preview(ctx)
    dead_readers = []
    for st in _inspect.list_streams(ctx):
        dead_readers += [f"{st.name}#{r.reader_id}(pid {r.pid})" for r in st.readers
                         if not r.alive]
    details: dict[str, Any] = {
        "segments": [n for n, _ in p.segments], "segment_bytes": sum(b for _, b in p.segments),
        "kept_being_written": p.kept, "expired": p.expired, "abandoned": p.abandoned,
        "dead_locks": p.dead_locks, "dead_reservation_bytes": p.dead_reservation_bytes,
        "spares_to_free": p.spares_freed, "spare_bytes_to_free": p.spare_bytes_freed,
        "dead_readers": dead_readers, "foreign": p.skipped}
    parts = []
    if p.segments:
        parts.append(f"{len(p.segments)} segment(s) of dead or finished processes, "
                     f"{human_bytes(sum(b for _, b in p.segments))}")
    if p.expired:
        parts.append(f"{len(p.expired)} expired dataset(s): {', '.join(p.expired[:5])}")
    if p.abandoned:
        parts.append(f"{len(p.abandoned)} name(s) whose writer died before a first version: "
                     + ", ".join(p.abandoned[:5]))
    if p.dead_locks:
        parts.append(f"{len(p.dead_locks)} writer lock(s) held by dead processes: "
                     + ", ".join(p.dead_locks[:5]))
    if p.dead_reservation_bytes:
        parts.append(f"{human_bytes(p.dead_reservation_bytes)} of quota reserved by dead "
                     "creators")
    if p.spares_freed:
        parts.append(f"{p.spares_freed} idle spare(s), {human_bytes(p.spare_bytes_freed)}")
    if dead_readers:
        parts.append(f"{len(dead_readers)} dead stream reader(s): {', '.join(dead_readers[:5])}")
    kept = f"; {p.kept} unreferenced segment(s) being written by live processes" if p.kept else ""
    gc_cmd = (f"ARROWSHM_NAMESPACE={namespace} arrowshm gc   (or arrowshm.Namespace("
              f"{namespace!r}).gc(); a running `arrowshm serve` reaps on its own)")
    if p.skipped:
        return DoctorCheck(
            "stale_objects", WARN,
            f"{len(p.skipped)} object(s) named like namespace {namespace!r}'s are not your "
            f"regular files (another user's, links, directories): {', '.join(p.skipped[:5])}; "
            "arrowshm never touches them" + ("; gc would reclaim " + "; ".join(parts)
                                            if parts else ""),
            f"inspect them (ls -l {directory}/ash-{namespace}-*) and have their owner (or "
            "root) remove them; use another ARROWSHM_NAMESPACE meanwhile"
            + ("\nthen: " + gc_cmd if parts else ""), details)
    if parts:
        return DoctorCheck(
            "stale_objects", WARN, "a gc would reclaim: " + "; ".join(parts) + kept,
            gc_cmd, details)
    return DoctorCheck("stale_objects", OK, "nothing for gc to reclaim" + kept, "", details)


def _check_spares(ctx: Any) -> DoctorCheck:
    from ._shm import pool

    u = pool.usage(ctx)
    limit, idle = pool.limit_bytes(ctx.directory), pool.idle_seconds()
    reserve = pool.reserve_target(ctx)
    details = {"spares": u.segments, "spare_bytes": u.nbytes, "limit_bytes": limit,
               "idle_seconds": idle, "reserve_bytes": reserve}
    if limit == 0:
        return DoctorCheck(
            "spares", WARN, "spares are off (ARROWSHM_SPARE_BYTES=0): every put writes into "
            "fresh pages, several times slower than into reused ones",
            "unset ARROWSHM_SPARE_BYTES (default: an eighth of the directory, at most 1 GiB)",
            details)
    return DoctorCheck(
        "spares", OK,
        f"{u.segments} spare segment(s), {human_bytes(u.nbytes)}: retired versions kept "
        f"with their pages faulted in for the next put of any name (bound "
        f"{human_bytes(max(limit, reserve))}, freed after {idle:g} s idle or first under "
        "pressure; arrowshm.gc(spares=True) frees them all)"
        + (f"; reserve {human_bytes(reserve)} kept ready" if reserve else ""), "", details)


def _check_quota(ctx: Any, namespace: str, directory: str) -> DoctorCheck:
    reg = ctx.registry
    quota, used = reg.quota, reg.bytes_used
    try:
        s = os.statvfs(directory)
        total, free = s.f_blocks * s.f_frsize, s.f_bavail * s.f_frsize
    except OSError:
        total = free = 0
    details = {"quota_bytes": quota, "bytes_used": used,
               "headroom_bytes": None if quota is None else quota - used}
    set_it = (f"arrowshm.Namespace({namespace!r}).set_quota(N) or PUT /v1/quota "
              "{\"max_bytes\": N} on the service")
    if quota is None:
        return DoctorCheck(
            "quota", OK, f"no quota: namespace {namespace!r} uses {human_bytes(used)}, "
            f"bounded by the {human_bytes(free)} free in {directory}", "", details)
    what = (f"quota {human_bytes(quota)}, {human_bytes(used)} used, "
            f"{human_bytes(max(0, quota - used))} left")
    free_it = (f"free space (`arrowshm gc`, `arrowshm rm NAME`, arrowshm.gc(spares=True)) or "
               f"raise the quota: {set_it}")
    if used >= quota:
        return DoctorCheck("quota", FAIL, what + ": full, puts raise QuotaExceededError",
                           free_it, details)
    if quota - used < quota // 10:
        return DoctorCheck("quota", WARN, what + ": less than 10% left", free_it, details)
    if total and quota > total:
        return DoctorCheck(
            "quota", WARN, what + f"; the quota is larger than {directory} "
            f"({human_bytes(total)}): puts fail with ShmFullError before it is reached",
            f"lower the quota below {human_bytes(total)} ({set_it}), or give {directory} "
            "more memory (see shm_size)", details)
    return DoctorCheck("quota", OK, what, "", details)


def _check_service(namespace: str) -> DoctorCheck:
    directory = runtime_dir()
    path = directory / f"{namespace}.sock"
    details: dict[str, Any] = {"socket": str(path), "answering": False}
    optional = "(optional: the data plane needs no service)"
    try:
        if os.path.lexists(directory):
            check_private_dir(directory)
        _check_socket_file(path, os.geteuid())
    except AccessDeniedError as exc:
        return DoctorCheck("service", FAIL, f"{exc}; arrowshm.Client() refuses it",
                           f"remove it (rm -r {directory}) and restart arrowshm serve; "
                           "if you did not make it, someone else may have", details)
    if not os.path.lexists(path):
        return DoctorCheck("service", OK, f"no service socket at {path} {optional}; "
                           f"`ARROWSHM_NAMESPACE={namespace} arrowshm serve` starts one",
                           "", details)
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.settimeout(3.0)
    try:
        sock.connect(str(path))
        _check_peer(sock, str(path), os.geteuid())
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: arrowshm\r\nConnection: close\r\n\r\n")
        raw = b""
        while len(raw) < 65536:
            chunk = sock.recv(4096)
            if not chunk:
                break
            raw += chunk
    except AccessDeniedError as exc:
        return DoctorCheck("service", FAIL, str(exc), "stop the process listening there; "
                           f"remove {path}", details)
    except (ConnectionRefusedError, FileNotFoundError):
        return DoctorCheck(
            "service", WARN, f"stale socket {path}: no process listens (a service was "
            "killed)", f"`ARROWSHM_NAMESPACE={namespace} arrowshm serve` replaces it, or "
            f"rm {path}", details)
    except OSError as exc:
        return DoctorCheck("service", WARN, f"the service at {path} does not answer: {exc}",
                           "restart arrowshm serve (its log says why it hangs)", details)
    finally:
        sock.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1", "replace")
    try:
        health = json.loads(body)
    except ValueError:
        health = {}
    if " 200 " not in status_line + " " or not isinstance(health, dict):
        return DoctorCheck("service", WARN, f"the service at {path} answered "
                           f"{status_line!r} to GET /healthz",
                           "restart arrowshm serve (its log says why)", details)
    details.update(answering=True, version=health.get("version"))
    return DoctorCheck("service", OK, f"arrowshm serve answers on {path} (namespace "
                       f"{health.get('namespace')!r}, version {health.get('version')})", "",
                       details)


# -- the entry points ------------------------------------------------------------------------


def doctor(namespace: Any = None, *, service: bool = True) -> DoctorReport:
    """Inspect this machine and a namespace; say, per check, OK, WARN or FAIL and the
    exact fix.

    Checks the segments' directory (writable, size, free space, Docker's 64 MB
    default, ``O_TMPFILE``), PID namespaces sharing it, ``ulimit -n`` against the
    mappings the namespace needs, the kernels' cache directory, the namespace's
    registry, what ``gc`` would reclaim (a dry run: nothing is reclaimed), spares,
    the quota and the service socket. Changes nothing, and creates no registry for
    a namespace that has none (docs/OPERATIONS.md describes every check).

    Parameters
    ----------
    namespace : str or Namespace, optional
        The namespace to inspect (default: ``ARROWSHM_NAMESPACE``, else ``default``).
    service : bool, default True
        Probe the service's Unix socket (``GET /healthz``); the service itself
        passes False.

    Returns
    -------
    DoctorReport
        The checks; ``.status`` is the worst, ``.exit_code`` 0/1/2.

    Raises
    ------
    InvalidNameError
        When *namespace* is not 1-12 characters of ``a-z0-9``.

    Examples
    --------
    >>> report = arrowshm.doctor()          # doctest: +SKIP
    >>> report.status, report["shm_size"].message   # doctest: +SKIP
    """
    name = namespace if isinstance(namespace, str) or namespace is None else namespace.name
    ns = validate_namespace(current_namespace() if name is None else name)
    directory = _directory(ns)
    evidence = container_evidence()
    checks = [_check_directory(ns, directory), _check_size(directory, evidence),
              _check_container(evidence), _check_o_tmpfile(directory),
              _guard("pid_namespace", _check_pid_namespace, ns, directory),
              _guard("open_files", _check_open_files, ns, directory),
              _guard("numba_cache", _check_numba_cache)]
    try:
        reg_check, ctx = _check_namespace(ns, directory)
    except Exception as exc:
        reg_check, ctx = DoctorCheck("namespace", FAIL, f"cannot inspect: {exc!r}",
                                     "report this as a bug", {}), None
    checks.append(reg_check)
    if ctx is None:
        skipped = "skipped: no registry to read (see the namespace check)"
        checks += [DoctorCheck(n, OK, skipped) for n in ("stale_objects", "spares", "quota")]
    else:
        checks += [_guard("stale_objects", _check_stale, ctx, ns, directory),
                   _guard("spares", _check_spares, ctx),
                   _guard("quota", _check_quota, ctx, ns, directory)]
    if service:
        checks.append(_guard("service", _check_service, ns))
    else:
        checks.append(DoctorCheck("service", OK, "running inside arrowshm serve", "",
                                  {"answering": True}))
    return DoctorReport(ns, directory, checks)


def _guard(name: str, fn: Any, *args: Any) -> DoctorCheck:
    """Run a check; a check that breaks is reported as a FAIL of its own, not raised."""
    try:
        result: DoctorCheck = fn(*args)
    except ArrowShmError as exc:
        return DoctorCheck(name, FAIL, f"{type(exc).__name__}: {exc}", "see the message", {})
    except Exception as exc:
        return DoctorCheck(name, FAIL, f"the check itself failed: {exc!r}",
                           "report this as a bug of arrowshm doctor", {})
    return result


def main(namespace: str | None, as_json: bool) -> int:
    """``arrowshm doctor [--json] [--namespace NS]``: print the report, return 0/1/2
    (2 also for a malformed namespace name, which is not a warning)."""
    try:
        report = doctor(namespace)
    except InvalidNameError as exc:
        print(f"arrowshm doctor: error: {exc}", file=sys.stderr)
        return FAIL_EXIT
    print(report.to_json() if as_json else repr(report))
    return report.exit_code
