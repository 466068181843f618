"""Tuning variables from the environment, read the same way everywhere.

``ARROWSHM_DIR`` (:func:`env_directory`) names the directory that holds a
namespace's registry and segments: unset or blank means ``/dev/shm``;
otherwise an absolute path of an existing directory (symbolic links in it are
resolved once). It is read when a process first uses a namespace, and every
process of the namespace must name the same directory (see
``docs/OPERATIONS.md``, "Segments on any filesystem").

The numeric variables follow these rules:

The rules, for every variable: unset or blank means the default; otherwise
the value must parse as a float, be **finite** (``inf`` would bring back the
endless waits a timeout exists to end, ``nan`` compares false with everything
and turns sleeps into busy loops) and be non-negative; the variables in
:data:`POSITIVE` must also be greater than zero, because zero has no sensible
meaning for them:

=============================  =====  ============================================
variable                       zero?  why
=============================  =====  ============================================
``ARROWSHM_STALL_TIMEOUT_S``   no     a reader would fail on every record another
                                      process is writing at that instant
``ARROWSHM_REGISTRY_CAPACITY`` no     a registry of no entries can hold nothing
``ARROWSHM_SPARE_BYTES``       yes    0 keeps no spare (retired segments are freed)
``ARROWSHM_SPARE_IDLE_S``      yes    0 frees spares at the next housekeeping pass
``ARROWSHM_POOL_SEGMENTS``     yes    legacy: 0 keeps no spare
``ARROWSHM_POOL_BYTES``        yes    legacy name of ``ARROWSHM_SPARE_BYTES``
``ARROWSHM_POOL_IDLE_S``       yes    legacy name of ``ARROWSHM_SPARE_IDLE_S``
``ARROWSHM_MAP_CACHE``         yes    0 turns the idle-mapping cache off
``ARROWSHM_MAP_CACHE_S``       yes    0 drops idle mappings at the next sweep
=============================  =====  ============================================

=============================  ===================================================
variable                       value
=============================  ===================================================
``ARROWSHM_DIR``               absolute path of the namespace's directory
                               (default ``/dev/shm``): a bigger or huge-page tmpfs,
                               or a disk directory; see :func:`env_directory`
=============================  ===================================================

``arrowshm serve`` reads its own variables with a parser that mirrors these
rules exactly (``arrowshm/service/config.py``; the service may import only the
public package); a test feeds both the same table of inputs.
"""

from __future__ import annotations

import math
import os

from ._errors import InvalidArgumentError

# variables for which zero makes no sense (see the module docstring)
POSITIVE = frozenset({"ARROWSHM_STALL_TIMEOUT_S", "ARROWSHM_REGISTRY_CAPACITY"})


def env_number(name: str, default: float, *, positive: bool | None = None) -> float:
    """The finite, non-negative number in environment variable *name*, or *default*
    when it is unset or blank.

    Parameters
    ----------
    name : str
        The variable.
    default : float
        Returned when the variable is unset or blank.
    positive : bool, optional
        Require a value greater than zero; by default, whether *name* is in
        :data:`POSITIVE`.

    Raises
    ------
    InvalidArgumentError
        When the variable holds anything but a finite non-negative number (``nan``
        and ``inf`` included), or zero where *positive* asks for more.
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if positive is None:
        positive = name in POSITIVE
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    ok = math.isfinite(value) and (value > 0 if positive else value >= 0)
    if not ok:
        what = "a finite number > 0" if positive else "a finite non-negative number"
        raise InvalidArgumentError(
            f"{name}={raw!r} is not {what}; unset it for the default ({default:g})",
            variable=name,
            value=raw,
        )
    return value


DEFAULT_DIR = "/dev/shm"


def env_directory() -> str:
    """The directory ``ARROWSHM_DIR`` names, canonical (absolute, symbolic links
    resolved), or ``/dev/shm`` when it is unset or blank or names /dev/shm itself.

    Only the path is checked here; whether the directory may hold segments
    (exists, is this user's or root's, not writable by others unless sticky) is
    checked when a namespace context is made (:mod:`arrowshm._shm.directory`).

    Raises
    ------
    InvalidArgumentError
        When the value is not an absolute path.
    """
    raw = os.environ.get("ARROWSHM_DIR", "").strip()
    if not raw:
        return DEFAULT_DIR
    if not os.path.isabs(raw) or "\0" in raw:
        raise InvalidArgumentError(
            f"ARROWSHM_DIR={raw!r} is not an absolute path; set it to the directory that "
            "holds the namespace's segments (e.g. /mnt/bigshm), or unset it for /dev/shm",
            variable="ARROWSHM_DIR", value=raw,
        )
    path = os.path.realpath(raw)
    if path == os.path.realpath(DEFAULT_DIR):
        return DEFAULT_DIR
    return path.rstrip("/") or "/"
