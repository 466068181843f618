"""The dashboard at ``/``: in-process checks of its routes, and a real browser
(Debian's headless chromium driven by Playwright) against a real ``arrowshm serve``.

Run ``python -m tests.service.test_dashboard docs/img/dashboard.png`` to retake the
screenshot of the docs (a few datasets and a stream with a reader).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

import arrowshm
from arrowshm.service.config import Settings
from arrowshm.service.main import create_app

from .helpers import ServeProcess

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

TOKEN = "dashboard-token"
STATIC = Path(__file__).resolve().parents[2] / "service" / "dashboard"


def chromium_path() -> str | None:
    """Debian's chromium (Playwright's own browser download is not used)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _table(n: int) -> pa.Table:
    return pa.table({"id": np.arange(n, dtype=np.int64), "price": np.linspace(0, 1, n)})


# ------------------------------------------------------------------ in process


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app(Settings.from_env(token=TOKEN))) as c:
        yield c


@pytest.mark.timeout(60)
def test_the_page_is_served_without_a_token_under_a_strict_policy(client: TestClient) -> None:
    for path, media in [("/", "text/html"), ("/dashboard/app.js", "text/javascript"),
                        ("/dashboard/app.css", "text/css")]:
        r = client.get(path)
        assert r.status_code == 200, path
        assert r.headers["content-type"].startswith(media)
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert r.headers["x-frame-options"] == "DENY"
    # the page carries no data: everything else still needs the token
    assert client.get("/v1/usage").status_code == 401
    assert client.get("/v1/datasets").status_code == 401
    assert client.get("/dashboard/other.js").status_code == 401


@pytest.mark.timeout(60)
def test_usage_route_reports_what_the_library_reports(client: TestClient) -> None:
    arrowshm.put("usage/a", _table(1000))
    body = client.get("/v1/usage", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    u = arrowshm.usage()
    assert body["namespace"] == u.namespace
    assert body["live_bytes"] == u.live_bytes > 0
    assert body["bytes_used"] == u.bytes_used
    assert body["shm_total"] == u.shm_total > 0
    assert 0 < body["shm_free"] <= body["shm_total"]
    assert {"spares", "spare_bytes", "quota", "reserve", "recycled"} <= body.keys()
    arrowshm.delete("usage/a")


def test_the_script_never_writes_html() -> None:
    """Names are user data: the script builds text nodes, never markup."""
    script = (STATIC / "app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink
    html = (STATIC / "index.html").read_text()
    assert "http://" not in html and "https://" not in html  # nothing from another host


# ------------------------------------------------------------------ in a browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's chromium under Playwright; generous waits (a watchdog, not a timing
    assertion: the machine may be loaded)."""
    exe = chromium_path()
    if exe is None:
        pytest.skip("no Chromium binary (apt-get install chromium): the dashboard's browser "
                    "test needs one")
    from playwright.sync_api import expect, sync_playwright  # in the dev extra

    expect.set_options(timeout=30_000)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, headless=True)
        try:
            yield b
        finally:
            b.close()


class Visit:
    """A page of *browser* on the service at *origin* that records, and refuses, every
    request to another origin."""

    def __init__(self, browser: Browser, origin: str) -> None:
        self.origin = origin
        self.foreign: list[str] = []
        self.errors: list[str] = []
        self.context = browser.new_context(viewport={"width": 1280, "height": 860})
        self.context.route("**/*", self._route)
        self.context.set_default_timeout(30_000)
        self.page: Page = self.context.new_page()
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def _route(self, route: Any) -> None:
        url: str = route.request.url
        if url.startswith(self.origin + "/") or url.startswith("data:"):
            route.continue_()
        else:
            self.foreign.append(url)
            route.abort()

    def sign_in(self, token: str) -> None:
        self.page.fill("#token-input", token)
        self.page.click("#token-form button[type=submit]")

    def row(self, table: str, name: str) -> Any:
        return self.page.locator(f"#{table} tbody tr[data-key='{name}']")

    def close(self) -> None:
        self.context.close()


@pytest.mark.timeout(180)
def test_the_page_shows_datasets_live_and_deletes_one(browser: Browser) -> None:
    from playwright.sync_api import expect

    with ServeProcess("--port", "0", env={"ARROWSHM_TOKEN": TOKEN}) as srv:
        visit = Visit(browser, srv.address)
        page = visit.page
        try:
            page.goto(srv.address + "/")
            # over TCP the page asks for the token, and says so when it is refused
            expect(page.locator("#token-dialog")).to_be_visible()
            visit.sign_in("not-the-token")
            expect(page.locator("#token-error")).to_be_visible()
            visit.sign_in(TOKEN)
            expect(page.locator("#token-dialog")).to_be_hidden()
            expect(page.locator("body")).to_have_attribute("data-loaded", "1")
            assert page.evaluate("sessionStorage.getItem('arrowshm.token')") == TOKEN
            expect(page.locator("#ds-empty")).to_be_visible()

            # a put by this process shows up without a reload, and so does the next one
            arrowshm.put("sales/eu:2024-q1", _table(1234), ttl=3600)
            row = visit.row("datasets", "sales/eu:2024-q1")
            expect(row).to_be_visible()
            cells = row.locator("td")
            expect(cells.nth(0)).to_have_text("sales/eu:2024-q1")
            expect(cells.nth(1)).to_have_text("1")
            expect(cells.nth(2)).to_have_text("1,234")
            expect(cells.nth(6)).not_to_have_text("–")  # a TTL counts down
            arrowshm.put("sales/eu:2024-q1", _table(99))
            expect(cells.nth(1)).to_have_text("2")
            expect(cells.nth(2)).to_have_text("99")
            expect(page.locator("#events li").first).to_contain_text("sales/eu:2024-q1")
            expect(page.locator("#m-live")).not_to_have_text("0 B")
            expect(page.locator("#m-shm")).not_to_have_text("–")

            # readers: this process holds a table of version 2 (when the service lists
            # readers; an older one shows a dash)
            held = arrowshm.get("sales/eu:2024-q1")
            with srv.http(TOKEN) as http:
                detail = http.get("/v1/datasets/sales/eu:2024-q1").json()
            expect(cells.nth(4)).to_have_text("1" if "readers" in detail else "–")
            del held

            # a stream with a reader that has read one batch of three
            schema = _table(1).schema
            with arrowshm.StreamWriter("ticks/live", schema, capacity_bytes=1 << 20) as w, \
                    arrowshm.StreamReader("ticks/live") as r:
                for _ in range(3):
                    w.write(_table(10))
                assert r.read(timeout=10) is not None
                srow = visit.row("streams", "ticks/live").locator("td")
                expect(srow.nth(2)).to_have_text("3")  # cursor
                expect(srow.nth(3)).to_have_text("1")  # readers
                expect(srow.nth(4)).to_have_text("2")  # lag
                expect(srow.nth(5)).to_have_text("0")  # missed
            arrowshm.delete("ticks/live")
            expect(visit.row("streams", "ticks/live")).to_have_count(0)

            # the token lasts the tab's session: a reload does not ask again
            page.reload()
            expect(page.locator("body")).to_have_attribute("data-loaded", "1")
            expect(page.locator("#token-dialog")).to_be_hidden()
            expect(row).to_be_visible()

            # delete from the page: one click arms the button, the second deletes
            button = row.locator("button")
            button.click()
            expect(button).to_have_text("Confirm")
            button.click()
            expect(row).to_have_count(0)
            expect(page.locator("#ds-empty")).to_be_visible()
            assert "sales/eu:2024-q1" not in {d.name for d in arrowshm.list_datasets()}

            assert visit.foreign == [], "the page loaded something from another host"
            assert visit.errors == []
        finally:
            visit.close()


class TcpToUnix:
    """A loopback TCP port that forwards each connection to a Unix socket, as
    ``ssh -L PORT:/path/to.sock`` or socat would (a browser cannot open a socket)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(str(self.path))
            self._socks += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                t = threading.Thread(target=self._pipe, args=(a, b), daemon=True)
                t.start()
                self._threads.append(t)

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.listener.close()
        for s in self._socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        for t in self._threads:
            t.join(timeout=5)


@pytest.mark.timeout(180)
def test_over_the_unix_socket_the_page_needs_no_token(browser: Browser,
                                                      tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with ServeProcess("--socket", str(tmp_path / "svc.sock")) as srv:
        forward = TcpToUnix(srv.socket_path)
        origin = f"http://127.0.0.1:{forward.port}"
        visit = Visit(browser, origin)
        page = visit.page
        try:
            arrowshm.put("via/socket", _table(7))
            page.goto(origin + "/")
            expect(page.locator("body")).to_have_attribute("data-loaded", "1")
            expect(page.locator("#token-dialog")).to_be_hidden()
            expect(visit.row("datasets", "via/socket").locator("td").nth(2)).to_have_text("7")
            button = visit.row("datasets", "via/socket").locator("button")
            button.click()
            button.click()
            expect(visit.row("datasets", "via/socket")).to_have_count(0)
            assert "via/socket" not in {d.name for d in arrowshm.list_datasets()}
            assert page.evaluate("sessionStorage.getItem('arrowshm.token')") is None
            assert visit.foreign == [] and visit.errors == []
        finally:
            visit.close()
            forward.close()


# ------------------------------------------------------------------ the docs' screenshot


def take_screenshot(path: Path) -> None:
    """Serve a throwaway namespace with a few datasets and a stream, and save the page."""
    exe = chromium_path()
    if exe is None:
        raise SystemExit("no chromium binary")
    from arrowshm.testing import delete_all, isolated_namespace, unique_namespace

    # ServeProcess inherits the namespace from the environment; every object of it is
    # unlinked at the end
    with isolated_namespace(unique_namespace("shot")) as name:
        _stage_and_shoot(arrowshm.Namespace(name), exe, path)
        delete_all(name)


def _stage_and_shoot(ns: arrowshm.Namespace, exe: str, path: Path) -> None:
    import subprocess
    import time

    from playwright.sync_api import expect, sync_playwright

    reader_code = (
        "import sys, time, arrowshm\n"
        f"r = arrowshm.StreamReader('ticks/live', namespace='{ns.name}', open_timeout=10)\n"
        "held = [r.read(timeout=10) for _ in range(40)]\n"
        f"tables = [arrowshm.Namespace('{ns.name}').get(n) for n in ('sales/eu/2024', "
        "'sales/us/2024')]\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n"
    )
    writer = None
    reader = None
    try:
        ns.put("sales/eu/2024", _table(1_250_000), ttl=6 * 3600)
        ns.put("sales/us/2024", _table(2_400_000), retain=2)
        ns.put("sales/us/2024", _table(2_500_000), retain=2)
        ns.put("features/user-embeddings", pa.table({"v": np.random.rand(3_000_000)}))
        ns.put("prices/latest", _table(5_000), ttl=300)
        ns.set_quota(4 << 30)
        schema = _table(1).schema
        writer = ns.StreamWriter("ticks/live", schema, capacity_bytes=8 << 20)
        reader = subprocess.Popen([sys.executable, "-c", reader_code], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        for _ in range(120):
            writer.write(_table(1_000))
        assert reader.stdout is not None and reader.stdout.readline().startswith("ready")
        held = ns.get("sales/us/2024")  # a reader of a dataset (this process)
        with ServeProcess("--port", "0", env={"ARROWSHM_TOKEN": TOKEN}) as srv, \
                sync_playwright() as p:
            b = p.chromium.launch(executable_path=exe, headless=True)
            page = b.new_page(viewport={"width": 1280, "height": 860}, device_scale_factor=1)
            page.goto(srv.address + "/")
            page.fill("#token-input", TOKEN)
            page.click("#token-form button[type=submit]")
            expect(page.locator("body")).to_have_attribute("data-loaded", "1")
            ns.put("prices/latest", _table(5_100), ttl=300)
            time.sleep(1.0)
            ns.put("prices/latest", _table(5_200), ttl=300)
            time.sleep(2.5)
            page.screenshot(path=str(path), full_page=True)
            b.close()
        del held
    finally:
        if reader is not None:
            reader.kill()
            reader.wait()
        if writer is not None:
            writer.close()


if __name__ == "__main__":
    take_screenshot(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img/dashboard.png"))
