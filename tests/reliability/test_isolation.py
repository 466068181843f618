"""Isolation: segments are 0600 and owned by their creator; another uid can
neither read nor delete them and gets AccessDeniedError (a PermissionError);
the service listens on loopback unless told otherwise.

Covered elsewhere: the service's 0600 socket and the SO_PEERCRED uid check
(tests/service/test_server.py::test_unix_socket_is_private_and_serves_the_client,
::test_another_uid_gets_403_unless_allowed), the TCP bearer token
(::test_tcp_requires_the_bearer_token, ::test_tcp_without_a_token_refuses_to_start),
zero 5xx under schemathesis (tests/service/test_schemathesis.py).

Not testable: group sharing. The library offers no way to create group-readable
segments (Segment.create takes a mode, but put/build/StreamWriter do not expose
it), so another uid can never read data and the automatic validation of another
uid's segments (get and StreamReader) cannot be exercised across users.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap

import pyarrow as pa
import pytest

import arrowshm
from arrowshm.testing import namespace_objects
from tests.helpers import check_stamped, stamped_table
from tests.reliability._util import check_seq_batch, seq_batch
from tests.service.helpers import ServeProcess


@pytest.mark.timeout(60)
def test_every_object_is_0600_and_owned_by_its_creator(namespace: str) -> None:
    arrowshm.put("iso/ds", stamped_table(1, 1000), retain=2)
    arrowshm.put("iso/ds", stamped_table(2, 1000), retain=2)
    with arrowshm.StreamWriter("iso/st", seq_batch(0, 1).schema, capacity_bytes=4096) as w:
        w.write(seq_batch(0, 10))
        objs = namespace_objects(namespace)
        assert len(objs) == 4  # registry, two versions, the stream
        for name in objs:
            st = os.stat("/dev/shm" + name)
            assert stat.S_IMODE(st.st_mode) == 0o600, (name, oct(st.st_mode))
            assert st.st_uid == os.getuid() and st.st_gid == os.getgid()


@pytest.mark.timeout(60)
def test_0600_holds_under_a_permissive_umask(namespace: str) -> None:
    old = os.umask(0)
    try:
        arrowshm.put("iso/umask", stamped_table(1, 10))
    finally:
        os.umask(old)
    for name in namespace_objects(namespace):
        assert stat.S_IMODE(os.stat("/dev/shm" + name).st_mode) == 0o600


# The child starts as root, warms every code path up in a private namespace (so the
# interpreter, whose stdlib lives under /root, has imported everything it needs), then
# drops to the other uid and tries everything against the test's namespace.
_OTHER_UID_CHILD = textwrap.dedent(
    """
    import os, sys, json
    import pyarrow as pa
    import arrowshm
    from arrowshm.testing import isolated_namespace, namespace_objects
    from arrowshm._shm.segment import Segment
    target_ns, uid, gid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with isolated_namespace():
        arrowshm.put("w", pa.table({"a": [1]})); arrowshm.get("w", validate=True)
        with arrowshm.StreamWriter("ws", pa.schema([("a", pa.int64())]),
                                   capacity_bytes=4096) as w:
            w.write(pa.record_batch([pa.array([1])], names=["a"]))
            with arrowshm.StreamReader("ws") as r:
                b = r.read(timeout=5); del b
        arrowshm.delete("w"); arrowshm.delete("ws"); arrowshm.gc()
    os.environ["ARROWSHM_NAMESPACE"] = target_ns
    objs = namespace_objects(target_ns)
    os.setgroups([]); os.setgid(gid); os.setuid(uid)
    out = {}
    calls = {
        "get": lambda: arrowshm.get("iso/ds"),
        "get_validate": lambda: arrowshm.get("iso/ds", validate=True),
        "info": lambda: arrowshm.info("iso/ds"),
        "list": lambda: arrowshm.list_datasets(),
        "delete": lambda: arrowshm.delete("iso/ds"),
        "put": lambda: arrowshm.put("iso/ds", pa.table({"a": [1]})),
        "stream_reader": lambda: arrowshm.StreamReader("iso/st"),
        "gc": lambda: arrowshm.gc(),
    }
    for name in objs:
        calls["open " + name] = (lambda n=name: Segment.open(n))
        calls["unlink " + name] = (lambda n=name: os.unlink("/dev/shm" + n))
    for what, call in calls.items():
        try:
            call()
            out[what] = "OK"
        except BaseException as exc:
            out[what] = [type(exc).__name__, isinstance(exc, arrowshm.AccessDeniedError),
                         isinstance(exc, PermissionError), str(exc)]
    print(json.dumps(out))
    """
)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create and become another user")
@pytest.mark.timeout(120)
def test_another_uid_can_neither_read_nor_delete(
    namespace: str, other_user: tuple[int, int],
) -> None:
    import json

    uid, gid = other_user
    arrowshm.put("iso/ds", stamped_table(5, 1000))
    with arrowshm.StreamWriter("iso/st", seq_batch(0, 1).schema, capacity_bytes=4096) as w:
        w.write(seq_batch(3, 10))
        objs = namespace_objects(namespace)
        proc = subprocess.run(
            [sys.executable, "-c", _OTHER_UID_CHILD, namespace, str(uid), str(gid)],
            capture_output=True, text=True, timeout=100,
            env=dict(os.environ, PYTHONPATH=os.getcwd()),
        )
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        for what in ("get", "get_validate", "info", "list", "delete", "put", "stream_reader",
                     "gc"):
            _name, is_denied, is_perm, msg = out[what]
            assert is_denied and is_perm, (what, out[what])
            assert "another user" in msg, msg  # says what is wrong and what to do
        for obj in objs:
            assert out["open " + obj][1], out["open " + obj]      # AccessDeniedError
            assert out["unlink " + obj][0] == "PermissionError"   # /dev/shm is sticky
        # nothing changed
        assert namespace_objects(namespace) == objs
        assert check_stamped(arrowshm.get("iso/ds")) == 5
        with arrowshm.StreamReader("iso/st") as r:
            assert check_seq_batch(r.read(timeout=5)) == 3


@pytest.mark.timeout(60)
def test_service_tcp_binds_loopback_unless_told(namespace: str) -> None:
    with ServeProcess("--port", "0", "--token", "t0k") as srv:
        assert srv.address.startswith("http://127.0.0.1:"), srv.address
        with srv.http() as c:
            assert c.get("/v1/datasets").status_code == 401
        with srv.http("t0k") as c:
            assert c.get("/v1/datasets").status_code == 200


_ = pa
