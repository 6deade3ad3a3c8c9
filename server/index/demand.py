"""Reports of project-page requests to the API (``GET /api/index-requests?path=...&count=N``).

The embedded index server hands each request for ``/simple/<name>/`` to ``report``, which
counts it in memory: a dict increment, no system call, so a busy page costs the server
nothing more than a quiet one. Once a second ``flush`` writes what was counted, one line per
(path, ``User-Agent``) with its count, to a pipe without blocking; what does not fit (the API is
slow or away) is dropped, as are new keys past ``MAX_PENDING`` in one second. A process of its
own (``python -m server.index.demand``) reads the pipe and sends each line as one report with the
client's own ``User-Agent`` and the count, with short timeouts, ignoring the answer. So a
report never delays or fails a client's request, and the API gets one request per page and
client a second however many requests the clients make. Where the API has a token, the
reports carry it (a report may start a build): the first line the process reads from its pipe
is the token (empty: none), so it is never in an environment, an argument or a file.

nginx logs each project page request as a syslog datagram (UDP, one per request, never waited
for; see ``server/index/nginx.py``) to a ``DemandListener``, which counts and reports them the
same way: a page request costs nginx one ``sendto``, and the API the same one report a second.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import subprocess
import sys
import threading
import time
from urllib.parse import quote, urlsplit

TIMEOUT_SECONDS = 2.0
# A write of at most PIPE_BUF bytes to a pipe is whole or refused, never torn.
MAX_LINE = 4000
# Distinct (path, User-Agent) pairs counted in one second, at most; more are dropped.
MAX_PENDING = 10_000


class DemandReporter:
    def __init__(self, api_url: str, token: str | None = None) -> None:
        self.sender = subprocess.Popen(
            [sys.executable, "-m", "server.index.demand", api_url], stdin=subprocess.PIPE, start_new_session=False
        )
        assert self.sender.stdin is not None
        self.fd = self.sender.stdin.fileno()
        os.write(self.fd, (token or "").encode() + b"\n")  # an empty pipe takes it whole
        os.set_blocking(self.fd, False)
        self.pending: dict[tuple[str, bytes], int] = {}
        self.dropped = 0

    def report(self, path: str, user_agent: bytes | None) -> None:
        key = (path, user_agent or b"")
        if key in self.pending:
            self.pending[key] += 1
        elif len(self.pending) < MAX_PENDING:
            self.pending[key] = 1
        else:
            self.dropped += 1

    def flush(self) -> None:
        """Write what was counted since the last flush, a line per (path, User-Agent)."""
        pending, self.pending = self.pending, {}
        for (path, agent), count in pending.items():
            line = b"\t".join([_field(path.encode("utf-8", "replace")), str(count).encode(), _field(agent)])
            try:
                os.write(self.fd, line[:MAX_LINE] + b"\n")
            except (BlockingIOError, BrokenPipeError):
                self.dropped += count

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.sender.terminate()


# nginx's syslog line: "<PRI>TIMESTAMP TAG: MESSAGE" (nohostname); the message is "PATH USER-AGENT".
SYSLOG_TAG = b"wheelyard_demand: "
DATAGRAM_BYTES = 65536


class DemandListener:
    """nginx's demand datagrams, counted into a ``DemandReporter`` by a thread of their own.

    The socket's receive buffer is the bound: datagrams that arrive while it is full are
    dropped by the kernel, as reports are everywhere else."""

    def __init__(self, api_url: str, token: str | None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.sock.settimeout(0.5)
        self.port: int = self.sock.getsockname()[1]
        self.reporter = DemandReporter(api_url, token)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="demand-listener", daemon=True)

    def start(self) -> DemandListener:
        self.thread.start()
        return self

    def _run(self) -> None:
        flushed = time.monotonic()
        while not self.stopped.is_set():
            try:
                self.count(self.sock.recv(DATAGRAM_BYTES))
            except TimeoutError:
                pass
            except OSError:
                if self.stopped.is_set():
                    return
            now = time.monotonic()
            if now - flushed >= 1.0:
                self.reporter.flush()
                flushed = now

    def count(self, datagram: bytes) -> None:
        _, tag, message = datagram.partition(SYSLOG_TAG)
        path, _, agent = message.rstrip(b"\n").partition(b" ")
        if tag and path.startswith(b"/simple/"):
            self.reporter.report(path.decode("utf-8", "replace"), agent)

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
        self.sock.close()
        self.reporter.flush()
        self.reporter.close()


def _field(value: bytes) -> bytes:
    return value.replace(b"\t", b" ").replace(b"\n", b" ").replace(b"\r", b" ")


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

    def send(self, path: str, user_agent: str, count: int = 1) -> None:
        url = f"{self.prefix}/api/index-requests?path={quote(path, safe='')}&count={count}"
        headers = {"User-Agent": user_agent} if user_agent else {}
        headers.update(self.auth)
        while True:
            reused = self.conn is not None
            try:
                if self.conn is None:
                    kind = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
                    self.conn = kind(self.host, self.port, timeout=TIMEOUT_SECONDS)
                self.conn.request("GET", url, headers=headers)
                self.conn.getresponse().read()
                return
            except (OSError, http.client.HTTPException):
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                # A kept-alive connection the API has closed meanwhile (uvicorn closes idle ones
                # after 5 s) fails on first use: once more on a new one. A new one that fails: dropped.
                if not reused:
                    return


def main(argv: list[str]) -> int:
    token = sys.stdin.buffer.readline().strip().decode()
    sender = Sender(argv[0], token)
    for raw in sys.stdin.buffer:
        path, _, rest = raw.rstrip(b"\n").partition(b"\t")
        count, _, agent = rest.partition(b"\t")
        sender.send(path.decode("utf-8", "replace"), agent.decode("latin-1"), int(count) if count.isdigit() else 1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
