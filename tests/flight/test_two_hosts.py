"""Two "hosts": two network namespaces joined by a veth pair, a service in each, the
mirror crossing between them while the remote service is killed mid-transfer.

Needs root (``ip netns add``); skipped otherwise. Marked slow.
"""

from __future__ import annotations

import os
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

import arrowshm

from ..helpers import check_stamped, stamped_table
from .helpers import TOKEN, FlightServe, in_namespace, pump_lines, put_stamped_in

pytestmark = pytest.mark.slow

REMOTE_IP, LOCAL_IP, PORT = "10.231.7.1", "10.231.7.2", 18815


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def two_hosts() -> Iterator[tuple[str, str]]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2")
    tag = secrets.token_hex(3)
    a, b = f"ashr{tag}", f"ashl{tag}"
    made: list[str] = []
    try:
        for ns in (a, b):
            _ip("netns", "add", ns)
            made.append(ns)
        _ip("link", "add", f"va{tag}", "type", "veth", "peer", "name", f"vb{tag}")
        _ip("link", "set", f"va{tag}", "netns", a)
        _ip("link", "set", f"vb{tag}", "netns", b)
        for ns, dev, ip in ((a, f"va{tag}", REMOTE_IP), (b, f"vb{tag}", LOCAL_IP)):
            _ip("-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
    except subprocess.CalledProcessError as exc:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        pytest.skip(f"cannot create network namespaces here: {exc.stderr!r}")
    try:
        yield a, b
    finally:
        for ns in made:  # deleting a namespace deletes its end of the veth pair, and the pair
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


@pytest.mark.timeout(600)
def test_mirror_crosses_hosts_and_survives_the_remote_dying_mid_transfer(
        two_hosts: tuple[str, str], remote_ns: str, namespace: str) -> None:
    host_a, host_b = two_hosts
    rows = 6 << 20  # ~144 MiB a version: long enough on the wire to be cut
    with in_namespace(remote_ns):
        arrowshm.put("big", stamped_table(1, rows))

    def remote() -> FlightServe:
        return FlightServe(remote_ns, host=REMOTE_IP, flight_port=PORT,
                           prefix=("ip", "netns", "exec", host_a))

    local_service = FlightServe(namespace, host=LOCAL_IP, prefix=("ip", "netns", "exec", host_b))
    seen: list[int] = []
    stop = threading.Event()

    errors: list[BaseException] = []

    def watch() -> None:
        try:
            _watch()
        except BaseException as exc:
            errors.append(exc)

    def _watch() -> None:  # every local version that ever becomes visible must be whole
        version = 0
        while not stop.is_set():
            try:
                info = arrowshm.wait("big", after_version=version, timeout=0.5)
            except arrowshm.WaitTimeoutError:
                continue
            version = info.version
            t = arrowshm.get("big")
            assert t.num_rows == rows
            seen.append(check_stamped(t))
            del t

    srv = remote()
    with local_service, srv:
        mirror = subprocess.Popen(
            ["ip", "netns", "exec", host_b, sys.executable, "-m", "arrowshm._cli", "mirror",
             f"grpc://{REMOTE_IP}:{PORT}", "big", "--poll", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,  # stderr: a few lines
            env={**os.environ, "ARROWSHM_TOKEN": TOKEN, "ARROWSHM_NAMESPACE": namespace})
        assert mirror.stdout is not None
        lines = pump_lines(mirror.stdout)
        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            _wait_line(lines, "mirrored version 1")
            for tag in (2, 3):  # a producer process on the remote host's side
                put_stamped_in(remote_ns, "big", tag, rows)
                time.sleep(0.05)  # let the mirror start fetching, then pull the plug
                srv.kill()
                srv = remote()
                srv.__enter__()
            _wait_line(lines, "mirrored version 3")
            # the local host's service exports the mirror's lag and staleness
            code = ("import httpx, sys; r = httpx.get(sys.argv[1] + '/metrics', headers="
                    f"{{'Authorization': 'Bearer {TOKEN}'}}); print(r.text)")
            metrics = subprocess.run(["ip", "netns", "exec", host_b, sys.executable, "-c", code,
                                      local_service.http], capture_output=True, text=True,
                                     timeout=60, check=True).stdout
            assert 'arrowshm_mirror_staleness_seconds{' in metrics
            assert 'mirror="big"' in metrics
            deadline = time.monotonic() + 60
            while 3 not in seen and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            stop.set()
            watcher.join(30)
            mirror.send_signal(signal.SIGTERM)
            try:
                mirror.wait(30)
            except subprocess.TimeoutExpired:
                mirror.kill()
                mirror.wait(30)
            srv.__exit__(None, None, None)
        assert not errors, errors
        assert mirror.returncode == 0
        assert mirror.stderr is not None
        assert "reconnecting" in mirror.stderr.read()  # it noticed the remote die
        assert seen and seen[0] == 1 and seen[-1] == 3
        assert seen == sorted(seen)  # whole versions only, in order; never a partial one
        assert check_stamped(arrowshm.get("big")) == 3


def _wait_line(lines: queue.Queue[str], needle: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if needle in lines.get(timeout=1):
                return
        except queue.Empty:
            pass
    raise AssertionError(f"the mirror never printed {needle!r}")
