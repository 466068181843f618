"""How stream readers and writers wait: timeouts, spin budgets, slices."""

from __future__ import annotations

import math
import time

from .._errors import InvalidArgumentError

__all__ = ["DEFAULT_SPIN_US", "WAIT_SLICE_S", "deadline_of", "spin_ns"]

DEFAULT_SPIN_US = 50.0
WAIT_SLICE_S = 0.25  # longest kernel wait between liveness checks / closed checks


def deadline_of(timeout: float | None, what: str = "timeout") -> float | None:
    """The ``time.monotonic()`` at which a wait of *timeout* seconds ends (None: never).

    Raises
    ------
    InvalidArgumentError
        When *timeout* is not None or a finite number >= 0.
    """
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not (
        timeout >= 0 and math.isfinite(timeout)
    ):
        raise InvalidArgumentError(f"{what} must be None or >= 0 seconds, not {timeout!r}",
                                   timeout=timeout)
    return time.monotonic() + timeout


def spin_ns(spin_us: float) -> int:
    """A spin budget in µs as ns.

    Raises
    ------
    InvalidArgumentError
        When *spin_us* is not a finite number >= 0.
    """
    if isinstance(spin_us, bool) or not isinstance(spin_us, (int, float)) or not (
        0 <= spin_us < 1e9
    ):
        raise InvalidArgumentError(f"spin_us must be >= 0, not {spin_us!r}", spin_us=spin_us)
    return int(spin_us * 1000)
