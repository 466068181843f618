"""Numeric tuning variables from the environment, read the same way everywhere."""

from __future__ import annotations

import os

from ._errors import InvalidArgumentError


def env_number(name: str, default: float) -> float:
    """The non-negative number in environment variable *name*, or *default* when it
    is unset or blank.

    Raises
    ------
    InvalidArgumentError
        When the variable holds anything but a non-negative number (NaN included).
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise InvalidArgumentError(
            f"{name}={raw!r} is not a non-negative number; unset it for the default "
            f"({default:g})",
            variable=name,
            value=raw,
        )
    return value
