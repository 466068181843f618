"""Process identity: a pid alone is reused, so owners are recorded as
(pid, start time in clock ticks since boot) and checked against /proc."""

from __future__ import annotations

import os

_cache: tuple[int, int] | None = None


def start_ticks(pid: int) -> int:
    """Start time of *pid* in clock ticks since boot, or 0 if it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    fields = data[data.rindex(b")") + 2 :].split()
    return int(fields[19])  # field 22 overall


def identity() -> tuple[int, int]:
    """(pid, start ticks) of this process; recomputed after a fork."""
    global _cache
    if _cache is None:
        pid = os.getpid()
        _cache = (pid, start_ticks(pid))
    return _cache


def _forget_identity() -> None:
    global _cache
    _cache = None


# (no getpid system call per use: a forked child starts with no cached identity)
os.register_at_fork(after_in_child=_forget_identity)


def is_alive(pid: int, start: int) -> bool:
    """True if process *pid* exists and, when *start* is non-zero, started at *start*.

    A zombie counts as dead: it can no longer touch shared memory.
    """
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    except PermissionError:  # hidepid: assume alive rather than steal its lock
        return True
    tail = data[data.rindex(b")") + 2 :].split()
    if tail[0] in (b"Z", b"X"):
        return False
    return start == 0 or int(tail[19]) == start


def command_name(pid: int) -> str | None:
    """The command name of *pid* (``/proc/<pid>/comm``, at most 15 characters), or
    None when it cannot be read (the process is gone, or ``/proc`` hides it).

    Only meaningful for a pid of this PID namespace (a registry refuses others).
    """
    if pid <= 0:
        return None
    try:
        with open(f"/proc/{pid}/comm", "rb") as f:
            raw = f.read(64)
    except OSError:
        return None
    return raw.decode("utf-8", "replace").rstrip("\n") or None


_ns_cache: tuple[int, int, int] | None = None


def pid_namespace() -> int:
    """Inode of this process's PID namespace (``/proc/self/ns/pid``), 0 if unknown.

    Two processes can judge each other's liveness by pid only when this is
    the same for both; a registry records its creator's and refuses others.
    """
    return _host_facts()[0]


def boot_id() -> tuple[int, int]:
    """This boot's id (``/proc/sys/kernel/random/boot_id``) as two 64-bit words, (0, 0)
    if unknown: pids and start times recorded before a reboot mean nothing after it."""
    facts = _host_facts()
    return facts[1], facts[2]


def _host_facts() -> tuple[int, int, int]:
    global _ns_cache
    if _ns_cache is None:
        try:
            ns = os.stat("/proc/self/ns/pid").st_ino
        except OSError:
            ns = 0
        try:
            with open("/proc/sys/kernel/random/boot_id") as f:
                raw = bytes.fromhex(f.read().strip().replace("-", ""))
            b0, b1 = int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:16], "little")
        except (OSError, ValueError):
            b0 = b1 = 0
        _ns_cache = (ns, b0, b1)
    return _ns_cache


def _forget_host_facts() -> None:
    global _ns_cache
    _ns_cache = None  # (a child of unshare --pid --fork may be in another namespace)


os.register_at_fork(after_in_child=_forget_host_facts)
