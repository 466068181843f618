"""Settings of ``arrowshm serve``, read from ``ARROWSHM_*`` environment variables
and overridden by command-line options."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import arrowshm

DEFAULT_REAPER_INTERVAL_S = 2.0


def default_socket_path(namespace: str) -> Path:
    """``$XDG_RUNTIME_DIR/arrowshm/<ns>.sock``, else ``/tmp/arrowshm-<uid>/<ns>.sock``."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "").strip()
    base = Path(runtime) / "arrowshm" if runtime else Path(f"/tmp/arrowshm-{os.getuid()}")
    return base / f"{namespace}.sock"


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default


def _env_uids(name: str) -> frozenset[int]:
    raw = os.environ.get(name, "").strip()
    return frozenset(int(x) for x in raw.replace(",", " ").split()) if raw else frozenset()


@dataclass(frozen=True)
class Settings:
    """Configuration of one service instance (one namespace).

    Attributes
    ----------
    namespace : str
        The arrowshm namespace served (``ARROWSHM_NAMESPACE``).
    socket_path : Path or None
        Unix socket to listen on; ``None`` with *port* set means TCP.
    host, port : str, int or None
        TCP address (``--host/--port``); loopback by default.
    token : str or None
        Bearer token required on every route but ``/healthz`` (``ARROWSHM_TOKEN``);
        mandatory over TCP.
    allowed_uids : frozenset of int
        Peer uids besides the service's own that may use the Unix socket
        (``ARROWSHM_ALLOWED_UIDS``, comma separated).
    reaper_interval : float
        Seconds between reaper runs (``ARROWSHM_REAPER_INTERVAL``, default 2); 0 disables
        the schedule (the reaper still runs once at start).
    log_level : str
    """

    namespace: str = field(default_factory=lambda: arrowshm.Namespace().name)
    socket_path: Path | None = None
    host: str = "127.0.0.1"
    port: int | None = None
    token: str | None = None
    allowed_uids: frozenset[int] = frozenset()
    reaper_interval: float = DEFAULT_REAPER_INTERVAL_S
    log_level: str = "info"

    def __post_init__(self) -> None:
        arrowshm.Namespace(self.namespace)  # validates the name
        if self.reaper_interval < 0:
            raise ValueError("reaper_interval must be >= 0")

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Settings from ``ARROWSHM_*`` variables; keyword arguments that are not
        None override them.

        Raises
        ------
        InvalidNameError
            When ``ARROWSHM_NAMESPACE`` is invalid.
        ValueError
            When a numeric variable cannot be parsed.
        """
        values: dict[str, object] = {
            "namespace": arrowshm.Namespace().name,
            "token": os.environ.get("ARROWSHM_TOKEN") or None,
            "allowed_uids": _env_uids("ARROWSHM_ALLOWED_UIDS"),
            "reaper_interval": _env_float("ARROWSHM_REAPER_INTERVAL", DEFAULT_REAPER_INTERVAL_S),
            "log_level": os.environ.get("ARROWSHM_LOG_LEVEL", "info"),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    @property
    def is_tcp(self) -> bool:
        return self.port is not None

    @property
    def uds_path(self) -> Path:
        """The Unix socket path in force (the default one when none was given)."""
        return self.socket_path or default_socket_path(self.namespace)
