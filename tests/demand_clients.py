"""What real pip and uv send: their User-Agent, captured by a local server they ask for a page."""

from __future__ import annotations

import http.server
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
