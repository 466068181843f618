"""Numeric tuning variables from the environment, read the same way everywhere.

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
