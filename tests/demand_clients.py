"""What real pip and uv send: their User-Agent, captured by a local server they ask for a page,
and a recording proxy that reports project page requests to the API as the index does."""

from __future__ import annotations

import http.server
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from tests.conftest import interpreter, isolated_pip_env


class _Recorder(http.server.ThreadingHTTPServer):
    agents: list[tuple[str, str]]


class _Capture(http.server.BaseHTTPRequestHandler):
    server: _Recorder

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.server.agents.append((self.path, self.headers.get("User-Agent", "")))
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def capturing_index() -> Iterator[_Recorder]:
    server = _Recorder(("127.0.0.1", 0), _Capture)
    server.agents = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def pip_user_agent(version: str, tmp: Path) -> str:
    """The User-Agent the real pip of CPython ``version`` sends for a project page."""
    with capturing_index() as server:
        subprocess.run(
            [interpreter(version), "-m", "pip", "download", "--no-deps", "--no-cache-dir", "-d", str(tmp / "dl")]
            + ["--index-url", f"http://127.0.0.1:{server.server_port}/simple/", "wheelyard-ua-probe"],
            env=isolated_pip_env(),
            capture_output=True,
            timeout=120,
        )
        pages = [agent for path, agent in server.agents if path.startswith("/simple/wheelyard-ua-probe")]
    assert pages, f"pip {version} asked nothing of the capturing index"
    return pages[0]


def uv_user_agent(version: str, tmp: Path) -> str:
    """The User-Agent the real uv sends when it resolves for CPython ``version``."""
    from uv import find_uv_bin

    with capturing_index() as server:
        subprocess.run(
            [str(find_uv_bin()), "pip", "compile", "--no-cache", "--python", interpreter(version), "-"]
            + ["--index-url", f"http://127.0.0.1:{server.server_port}/simple/"],
            input=b"wheelyard-ua-probe\n",
            env=isolated_pip_env(UV_NO_CONFIG="1", UV_CACHE_DIR=str(tmp / "uv-cache")),
            capture_output=True,
            timeout=120,
        )
        pages = [agent for path, agent in server.agents if path.startswith("/simple/wheelyard-ua-probe")]
    assert pages, "uv asked nothing of the capturing index"
    return pages[0]


class _Proxy(http.server.BaseHTTPRequestHandler):
    """Forwards to the index; reports each /simple/<name>/ request to the API with the client's User-Agent."""

    index: str
    api: str

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        agent = self.headers.get("User-Agent", "")
        upstream = requests.get(self.index + self.path, headers={"User-Agent": agent}, timeout=30)
        if self.path.startswith("/simple/") and self.path.count("/") >= 3:
            requests.get(
                f"{self.api}/api/index-requests",
                params={"path": self.path},
                headers={"User-Agent": agent},
                timeout=10,
            )
        body = upstream.content
        self.send_response(upstream.status_code)
        self.send_header("Content-Type", upstream.headers.get("Content-Type", "text/html"))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def reporting_proxy(index: str, api: str) -> Iterator[str]:
    """An index URL whose project page requests are reported to the API, as the index itself will."""
    handler = type("Proxy", (_Proxy,), {"index": index.rstrip("/"), "api": api})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/simple/"
    finally:
        server.shutdown()
        server.server_close()
