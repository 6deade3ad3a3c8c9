"""Reports of project-page requests to the API (``GET /api/index-requests?path=...``).

The embedded index server hands each request for ``/simple/<name>/`` to ``report``, which
writes one line to a pipe without blocking and returns; when the pipe is full (the API is
slow or away) the report is dropped. A process of its own (``python -m server.index.demand``)
reads the pipe and sends the reports, each with the client's own ``User-Agent``, with short
timeouts and ignoring the answer. So a report never delays or fails a client's request, and
sending them costs the server no time under its lock on Python. Where the API has a token, the
reports carry it (a report may start a build): the first line the process reads from its pipe
is the token (empty: none), so it is never in an environment, an argument or a file.
(nginx does the same with ``mirror``; see ``server/index/nginx.py``.)
"""

from __future__ import annotations

import contextlib
import http.client
import os
import subprocess
import sys
from urllib.parse import quote, urlsplit

TIMEOUT_SECONDS = 2.0
# A write of at most PIPE_BUF bytes to a pipe is whole or refused, never torn.
MAX_LINE = 4000


class DemandReporter:
    def __init__(self, api_url: str, token: str | None = None) -> None:
        self.sender = subprocess.Popen(
            [sys.executable, "-m", "server.index.demand", api_url], stdin=subprocess.PIPE, start_new_session=False
        )
        assert self.sender.stdin is not None
        self.fd = self.sender.stdin.fileno()
        os.write(self.fd, (token or "").encode() + b"\n")  # an empty pipe takes it whole
        os.set_blocking(self.fd, False)
        self.dropped = 0

    def report(self, path: str, user_agent: bytes | None) -> None:
        line = path.encode("utf-8", "replace").replace(b"\t", b" ") + b"\t" + (user_agent or b"").replace(b"\n", b" ")
        try:
            os.write(self.fd, line[:MAX_LINE].replace(b"\n", b" ") + b"\n")
        except (BlockingIOError, BrokenPipeError):
            self.dropped += 1

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.sender.terminate()


class Sender:
    """The reporting process's side: one keep-alive connection to the API."""

    def __init__(self, api_url: str, token: str = "") -> None:
        parts = urlsplit(api_url)
        self.auth = {"Authorization": f"Bearer {token}"} if token else {}
        self.https = parts.scheme == "https"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/")
        self.conn: http.client.HTTPConnection | None = None

    def send(self, path: str, user_agent: str) -> None:
        url = f"{self.prefix}/api/index-requests?path={quote(path, safe='')}"
        headers = {"User-Agent": user_agent} if user_agent else {}
        headers.update(self.auth)
        try:
            if self.conn is None:
                kind = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
                self.conn = kind(self.host, self.port, timeout=TIMEOUT_SECONDS)
            self.conn.request("GET", url, headers=headers)
            self.conn.getresponse().read()
        except (OSError, http.client.HTTPException):
            if self.conn is not None:
                self.conn.close()
            self.conn = None


def main(argv: list[str]) -> int:
    token = sys.stdin.buffer.readline().strip().decode()
    sender = Sender(argv[0], token)
    for raw in sys.stdin.buffer:
        path, _, agent = raw.rstrip(b"\n").partition(b"\t")
        sender.send(path.decode("utf-8", "replace"), agent.decode("latin-1"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
