"""Fixtures for the kernel tests: real shared memory, always unlinked, leaks fail."""

from __future__ import annotations

import multiprocessing
import multiprocessing.process
import os
from collections.abc import Callable, Iterator

import pytest

from tests.kernels.helpers import SHM_PREFIX, Segment, create_segment

_DEV_SHM = "/dev/shm"


def _ours() -> set[str]:
    prefix = f"{SHM_PREFIX.lstrip('/')}{os.getpid()}-"
    try:
        return {n for n in os.listdir(_DEV_SHM) if n.startswith(prefix)}
    except FileNotFoundError:  # pragma: no cover - no /dev/shm on this OS
        return set()


@pytest.fixture(autouse=True)
def _no_leaked_segments() -> Iterator[None]:
    """Fail the test if it leaves one of its segments in /dev/shm."""
    before = _ours()
    yield
    leaked = _ours() - before
    assert not leaked, f"segments left in /dev/shm: {sorted(leaked)}"


@pytest.fixture
def segment() -> Iterator[Callable[[int], Segment]]:
    """Factory creating mapped segments that are unlinked however the test ends."""
    created: list[Segment] = []

    def make(size: int) -> Segment:
        seg = create_segment(size)
        created.append(seg)
        return seg

    try:
        yield make
    finally:
        for seg in created:
            seg.unlink()


class Children:
    """Starts spawned child processes and kills whatever is still alive at teardown."""

    def __init__(self) -> None:
        self.ctx = multiprocessing.get_context("spawn")
        self.procs: list[multiprocessing.process.BaseProcess] = []

    def start(
        self, target: Callable[..., object], *args: object
    ) -> multiprocessing.process.BaseProcess:
        proc = self.ctx.Process(target=target, args=args, daemon=True)
        proc.start()
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            if proc.is_alive():
                proc.kill()
            proc.join(10)


@pytest.fixture
def children() -> Iterator[Children]:
    """Spawned children ("spawn": never fork a process that ran numba), killed at teardown."""
    kids = Children()
    try:
        yield kids
    finally:
        kids.close()
