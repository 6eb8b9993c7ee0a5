"""The HTML report in a real browser (Debian's headless chromium): it renders, fetches nothing, runs no script.

Each run gets its own profile directory and a proxy of ours on 127.0.0.1
(loopback included, ``<-loopback>``) that records every request the browser
makes and forwards none: nothing leaves the machine. A control page that does
reference an image proves the proxy sees requests, so "no request" means
something. chromium is a test dependency: ``scripts/install.sh --test``
installs it; without it these tests fail and say so (they never skip).
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from cicd_audit.analyzers.cli import analyze as analyze_cmd

from .report_sessions import HOSTILE_NAMES, HOSTILE_PROCESS, HOSTILE_STEP, blocked_job

BROWSER_TIMEOUT = 90

#: Hosts chromium asks on its own whatever page it shows, and that no flag of
#: Debian's build turns off in headless mode: network time, component updates,
#: sign-in. Exact names, so a page loading e.g. fonts.googleapis.com still counts.
BROWSER_OWN_HOSTS = ("clients2.google.com", "update.googleapis.com", "accounts.google.com")


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium")
    assert path, "chromium is missing: scripts/install.sh --test installs it (the HTML report's browser tests need it)"
    return path


class RecordingProxy:
    """An HTTP proxy on 127.0.0.1 that writes down each request line and answers 404, forwarding nothing."""

    def __init__(self):
        self.requests: list[str] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    first = conn.recv(4096).split(b"\r\n", 1)[0].decode("latin-1")
                    if first:
                        self.requests.append(first)
                    conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                except OSError:
                    pass

    def close(self):
        self.sock.close()

    def page_requests(self) -> list[str]:
        """The requests a page made: everything but the browser's own (BROWSER_OWN_HOSTS)."""
        return [r for r in self.requests if _request_host(r) not in BROWSER_OWN_HOSTS]


def _request_host(request_line: str) -> str:
    """'GET http://h/x HTTP/1.1' or 'CONNECT h:443 HTTP/1.1' -> 'h'."""
    target = request_line.split(" ")[1] if " " in request_line else ""
    target = target.split("://", 1)[-1]
    return target.split("/", 1)[0].rsplit(":", 1)[0].lower()


@pytest.fixture
def proxy():
    p = RecordingProxy()
    yield p
    p.close()


def browse(chromium: str, page: Path, tmp_path: Path, proxy: RecordingProxy, *mode: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    argv = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
            "--disable-background-networking", "--disable-component-update", "--disable-default-apps",
            "--disable-extensions", "--disable-features=NetworkTimeServiceQuerying", f"--user-data-dir={profile}",
            f"--proxy-server=http://127.0.0.1:{proxy.port}", "--proxy-bypass-list=<-loopback>",
            "--window-size=1280,1600", *mode, page.resolve().as_uri()]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=BROWSER_TIMEOUT)
    assert r.returncode == 0, r.stderr[-2000:]
    return r


def html_report(session: Path, out: Path) -> Path:
    res = CliRunner().invoke(analyze_cmd, [str(session), "--fail-on", "high", "--html", str(out)])
    assert res.exit_code in (0, 1), res.output
    return out


class Dom(HTMLParser):
    """Elements, attributes and visible text of the DOM chromium dumped."""

    def __init__(self, dom: str):
        super().__init__(convert_charrefs=True)
        self.tags, self.attrs, self.text, self.title = [], [], [], ""
        self._in_title = False
        self.feed(dom)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [k for k, _ in attrs]
        self._in_title = tag == "title"

    def handle_endtag(self, tag):
        self._in_title = False

    def handle_data(self, data):
        self.text.append(data)
        if self._in_title:
            self.title += data


@pytest.fixture(scope="module")
def hostile_page(session_builder, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("browser")
    return html_report(blocked_job(session_builder, d / "hostile-job", hostile=True), d / "hostile.html")


def test_page_renders_and_fetches_nothing(chromium, exfil_session, proxy, tmp_path):
    page = html_report(exfil_session, tmp_path / "report.html")
    dom = Dom(browse(chromium, page, tmp_path, proxy, "--dump-dom").stdout)
    text = " ".join(dom.text)
    assert dom.title.startswith("cicd-audit: FAIL, 1 session (ci-exfil)")
    for part in ("Key metrics", "Potential exfiltration", "example.net", "What the job contacted", "paste.example.org"):
        assert part in text, part
    assert "svg" in dom.tags and "rect" in dom.tags
    assert proxy.page_requests() == [], proxy.requests


def test_the_proxy_would_see_a_fetch(chromium, proxy, tmp_path):
    """The control: a page that loads an image makes the browser ask our proxy for it."""
    page = tmp_path / "control.html"
    page.write_text("<!DOCTYPE html><title>control</title><img src='http://fetch-probe.invalid/pixel.png'>")
    browse(chromium, page, tmp_path, proxy, "--dump-dom")
    assert any(_request_host(r) == "fetch-probe.invalid" for r in proxy.page_requests()), proxy.requests


def test_hostile_names_stay_text(chromium, hostile_page, proxy, tmp_path):
    dom = Dom(browse(chromium, hostile_page, tmp_path, proxy, "--dump-dom").stdout)
    assert dom.title.startswith("cicd-audit: PASS")  # the script in the process name did not set it
    assert "script" not in dom.tags and "img" not in dom.tags and "b" not in dom.tags
    assert not [a for a in dom.attrs if a.startswith("on") or a in ("src", "href")]
    text = "".join(dom.text)
    assert HOSTILE_PROCESS in text and HOSTILE_STEP in text  # shown, as text
    assert "\u202e" not in text and HOSTILE_NAMES[0].replace("\u202e", "\\u202e") in text
    assert proxy.page_requests() == [], proxy.requests


def pixels(png: Path):
    """The screenshot as an (height, width, 3) array of RGB values."""
    import numpy as np
    from PIL import Image

    with Image.open(png) as im:
        return np.asarray(im.convert("RGB"), dtype=np.int16)


def non_white_share(png: Path) -> float:
    px = pixels(png)
    return float((px.min(axis=2) < 245).mean())


def has_colour(png: Path, rgb: tuple[int, int, int], rows: int = 60) -> bool:
    """Whether a pixel of the top ``rows`` is within 12 of ``rgb`` in every channel (the verdict banner)."""
    top = pixels(png)[:rows]
    return bool((abs(top - rgb).max(axis=2) < 12).any())


def test_screenshot_is_not_empty(chromium, exfil_session, proxy, tmp_path):
    page = html_report(exfil_session, tmp_path / "report.html")
    shot = tmp_path / "report.png"
    browse(chromium, page, tmp_path, proxy, f"--screenshot={shot}")
    assert non_white_share(shot) > 0.05  # banner, tables, timeline
    assert has_colour(shot, (0xCF, 0x22, 0x2E))  # the red FAIL banner at the top
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><title>blank</title>")
    blank_shot = tmp_path / "blank.png"
    browse(chromium, blank, tmp_path, proxy, f"--screenshot={blank_shot}")
    assert non_white_share(blank_shot) < 0.01  # the measure tells an empty page apart


def test_no_external_reference_in_the_page_source(hostile_page):
    """Belt and braces beside the browser: nothing in the source a browser could fetch."""
    page = hostile_page.read_text()
    assert not re.search(r"(?i)<(script|img|iframe|link|object|embed)\b", page)
