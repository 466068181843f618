"""Peer: Ray's object store (``ray.put`` / ``ray.get``).

Runs in its own virtual environment (bench/.venvs/ray: ``ray``, and the main
environment's pyarrow), started as a script: ``ray.init`` starts a local
cluster (``num_cpus=2``, ``object_store_memory`` 2 GB, no dashboard, usage
statistics off, node address 127.0.0.1, temp dir inside the work directory);
the producer is the driver, the consumer an actor (a separate worker process)
that is handed the ``ObjectRef`` and calls ``ray.get``. ``ray.shutdown`` runs
in a ``finally``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

import pyarrow as pa

try:
    from . import _proto
except ImportError:  # run as a script in the peer's interpreter
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _proto  # type: ignore[no-redef]

META = {
    "name": "ray",
    "label": "Ray",
    "venv": "ray",
    "requirements": ["ray==2.60.*", "pyarrow==26.0.1", "numpy"],
    "check": "import ray",
    "timeout": 900,
    "small": True,
    "env": {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DISABLE_DOCKER_CPU_WARNING": "1"},
}


class RayStore(_proto.Store):
    def connect(self) -> None:
        pass

    def put(self, table: pa.Table) -> Any:
        import ray

        return ray.put(table)

    def free(self, handle: Any) -> None:
        del handle


class ActorConsumer:
    """The consumer: a Ray actor; refs travel inside a list so Ray does not resolve them."""

    def __init__(self) -> None:
        import ray

        @ray.remote(num_cpus=0)
        class Consumer:
            def __init__(self) -> None:
                self.held = None

            def get(self, refs: list[Any]) -> tuple[int, float, int]:
                self.held = None
                t0 = _proto.now()
                self.held = ray.get(refs[0])
                t1 = _proto.now()
                return t1, (t1 - t0) / 1e9, self.held.num_rows

            def repeat(self, refs: list[Any], n: int) -> float:
                self.held = None
                times = []
                for _ in range(n):
                    t0 = _proto.now()
                    self.held = ray.get(refs[0])
                    times.append((_proto.now() - t0) / 1e9)
                return _proto.median(times)

            def release(self) -> bool:
                self.held = None
                return True

            def small(self, refs: list[Any]) -> tuple[int, int]:
                t = ray.get(refs[0])
                return _proto.now(), t.num_rows

        self.ray = ray
        self.actor = Consumer.remote()  # type: ignore[attr-defined]
        ray.get(self.actor.release.remote())

    def get(self, handle: Any) -> tuple[int, float, int]:
        return self.ray.get(self.actor.get.remote([handle]))  # type: ignore[no-any-return]

    def repeat(self, handle: Any, n: int) -> float:
        return self.ray.get(self.actor.repeat.remote([handle], n))  # type: ignore[no-any-return]

    def release(self) -> None:
        self.ray.get(self.actor.release.remote())

    def small_run(self, store: Any, tables: list[pa.Table], n: int,
                  tag: int) -> tuple[int, int, int, int]:
        """ray.put each table and hand its ref to the actor (one call per table, as a
        pipeline passes refs); the actor gets each one in order."""
        k = len(tables)
        t0 = _proto.now()
        refs = []
        calls = []
        for i in range(n):
            ref = self.ray.put(tables[i % k])
            refs.append(ref)
            calls.append(self.actor.small.remote([ref]))
        done = self.ray.get(calls)
        return t0, max(t for t, _ in done), len(done), sum(r for _, r in done)

    def stop(self) -> None:
        self.ray.kill(self.actor)


def main() -> int:
    import ray

    opts = _proto.parse_args()
    tmp = os.path.join(opts["workdir"], "ray")
    os.makedirs(tmp, exist_ok=True)
    consumer = None
    try:
        ray.init(num_cpus=2, object_store_memory=2_000_000_000, include_dashboard=False,
                 _temp_dir=tmp, _node_ip_address="127.0.0.1", log_to_driver=False,
                 configure_logging=False)
        consumer = ActorConsumer()
        rows = _proto.handoff(RayStore(), consumer, opts)
        small = _proto.small_tables(RayStore(), consumer, opts) if opts["small"] else []
        _proto.emit({"version": "ray " + ray.__version__, "rows": rows, "small": small})
    finally:
        if consumer is not None:
            with contextlib.suppress(Exception):
                consumer.stop()
        ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
