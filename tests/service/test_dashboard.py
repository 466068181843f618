"""The dashboard at ``/``: in-process checks of its routes, and a real browser
(Debian's headless chromium driven by Playwright) against a real ``arrowshm serve``.

Run ``python -m tests.service.test_dashboard docs/img/dashboard.png`` to retake the
screenshot of the docs (a few datasets and a stream with a reader).
"""

from __future__ import annotations

import os
import shutil
import sys
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
    assert {"spares", "spare_bytes", "quota", "recycled"} <= body.keys()
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
    exe = chromium_path()
    if exe is None:
        pytest.skip("no Chromium binary (apt-get install chromium): the dashboard's browser "
                    "test needs one")
    from playwright.sync_api import sync_playwright  # in the dev extra

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


# ------------------------------------------------------------------ the docs' screenshot


def take_screenshot(path: Path) -> None:
    """Serve a throwaway namespace with a few datasets and a stream, and save the page."""
    import subprocess
    import time

    exe = chromium_path()
    if exe is None:
        raise SystemExit("no chromium binary")
    from playwright.sync_api import expect, sync_playwright

    ns = arrowshm.Namespace(f"shot{os.getpid() % 100000}")
    os.environ["ARROWSHM_NAMESPACE"] = ns.name  # ServeProcess inherits the environment
    reader_code = (
        "import sys, time, arrowshm\n"
        f"r = arrowshm.StreamReader('ticks/live', namespace='{ns.name}', open_timeout=10)\n"
        "held = [r.read(timeout=10) for _ in range(40)]\n"
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
        for name in ns.list_datasets():
            ns.delete(name.name)
        for s in ns.list_streams():
            ns.delete(s.name)
        ns.set_quota(None)
        ns.gc(spares=True)


if __name__ == "__main__":
    take_screenshot(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img/dashboard.png"))
