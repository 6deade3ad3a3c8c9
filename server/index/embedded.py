"""The embedded static server of the index: the site tree from memory, uploads passed through.

Used by ``wheelyard index`` where no nginx is on ``PATH`` (or ``WHEELYARD_INDEX_SERVER=embedded``).
It answers what nginx would with the generated configuration (``server/index/nginx.py``):

* ``GET``/``HEAD`` of ``/simple/`` and ``/simple/<name>/``: the page in the form the
  ``Accept`` header asks for (PEP 691, ``Vary: Accept``, 406), gzip when accepted, a
  non-normalised name redirected to the canonical URL, a missing project 404;
* ``/packages/<file>`` (and ``<file>.metadata``): the file, with ``Range``;
* ``ETag``/``Last-Modified`` and 304 everywhere; every other request (uploads: ``POST /``,
  and ``/health``) is passed to pypiserver, the upload endpoint, byte for byte.

Files are read once and kept in memory while their inode, size and mtime stay the same (a
page rewrite is an ``os.replace``: a new inode). The server is one ``asyncio`` protocol
(``uvloop`` where installed) with a deadline per connection: a client has
``header_timeout`` seconds to send a request's headers, and an idle keep-alive connection
is closed after ``keepalive_timeout``, so slow clients cost a socket each, nothing more.
Requests for project pages are reported to the API by ``DemandReporter`` (bounded, dropped when full).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import ctypes
import errno
import hashlib
import hmac
import os
import signal
import socket
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any

from builder.errors import PortInUse
from server.index.accept import Acceptor, ConnectionShares
from server.index.connection import Connection
from server.index.demand import DemandReporter
from server.index.routes import Routes

MAX_HEAD_BYTES = 64 * 1024
CACHE_FILE_BYTES = 8 << 20  # files up to this size are kept in memory
CACHE_TOTAL_BYTES = 512 << 20  # shared out among the serving processes
SENDFILE_BYTES = 64 << 10  # files larger than this are kept open too, and sent by sendfile
# At most this many kept open per process (others are sent from memory): descriptors stay for connections.
SENDFILE_OPEN_FILES = 128
MAX_PROCESSES = 8


@dataclass(frozen=True)
class FrontConfig:
    site: Path
    upload_host: str
    upload_port: int
    read_password: str | None = None
    api_url: str | None = None
    api_token: str | None = None  # carried by demand reports
    header_timeout: float = 10.0
    keepalive_timeout: float = 30.0
    access_log: Path | None = None


@dataclass
class Cached:
    key: tuple[int, int, int]
    path: str
    body: bytes | None  # None: too large to keep; streamed from disk
    etag: str
    last_modified: str
    mtime: float
    size: int
    # The headers of a whole 200 answer after its Date line, rendered once per (content type,
    # extra headers): most requests are answered with these and the body, as they are.
    heads: dict[tuple[bytes, bytes], bytes] = field(default_factory=dict)
    fd: int | None = None  # a large body's file, open while cached: sent by sendfile

    def forget(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def validators(self) -> bytes:
        return b"ETag: " + self.etag.encode() + b"\r\nLast-Modified: " + self.last_modified.encode() + b"\r\n"


class SiteFiles:
    """Files of the site tree, read once while unchanged."""

    def __init__(self, root: Path, budget: int = CACHE_TOTAL_BYTES) -> None:
        self.root = root
        self.prefix = f"{root}/"
        self.budget = budget
        self.cache: dict[str, Cached] = {}
        self.cached_bytes = 0
        self.open_files = 0  # entries' descriptors kept for sendfile

    def get(self, rel: str) -> Cached | None:
        path = self.prefix + rel
        try:
            st = os.stat(path)
        except (OSError, ValueError):  # missing, or a name no file can have (a NUL)
            return None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        hit = self.cache.get(rel)
        if hit is not None:
            if hit.key == key:
                return hit
            self._remove(rel)  # first: its descriptor may serve the new file
        if not os.path.isfile(path):
            return None
        body, fd = None, None
        if st.st_size <= CACHE_FILE_BYTES:
            with open(path, "rb") as fh:
                body = fh.read()
                if len(body) != st.st_size or os.fstat(fh.fileno()).st_ino != st.st_ino:
                    return None  # replaced while read: the next request reads it again
                if st.st_size > SENDFILE_BYTES and self.open_files < SENDFILE_OPEN_FILES:
                    fd = os.dup(fh.fileno())
                    self.open_files += 1
        entry = Cached(
            key=key,
            path=path,
            body=body,
            etag=f'"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"',
            last_modified=formatdate(st.st_mtime, usegmt=True),
            mtime=st.st_mtime,
            size=st.st_size,
            fd=fd,
        )
        self._keep(rel, entry)
        return entry

    def _forget(self, entry: Cached) -> None:
        if entry.fd is not None:
            self.open_files -= 1
        entry.forget()

    def _remove(self, rel: str) -> None:
        old = self.cache.pop(rel, None)
        if old is not None:
            self._forget(old)
            if old.body is not None:
                self.cached_bytes -= len(old.body)

    def _keep(self, rel: str, entry: Cached) -> None:
        self._remove(rel)
        if entry.body is None:
            self.cache[rel] = entry
            return
        while self.cache and self.cached_bytes + len(entry.body) > self.budget:
            self._remove(next(iter(self.cache)))
        self.cache[rel] = entry
        self.cached_bytes += len(entry.body)


class AccessLog:
    """Whole lines, appended with one ``write`` each time (``O_APPEND``): the processes of one
    server share the file, and no line of one is ever cut by another's."""

    FLUSH_BYTES = 1 << 16

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.lines: list[str] = []
        self.size = 0

    def write(self, line: str) -> None:
        self.lines.append(line)
        self.size += len(line)
        if self.size >= self.FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if self.lines:
            data = "".join(self.lines).encode("utf-8", "replace")
            self.lines, self.size = [], 0
            os.write(self.fd, data)


class Clock:
    """The Date header, formatted once a second."""

    def __init__(self) -> None:
        self.second = 0
        self.value = b""

    def date(self) -> bytes:
        now = int(time.time())
        if now != self.second:
            self.second = now
            self.value = formatdate(now, usegmt=True).encode()
        return self.value


class Front:
    """What every connection shares: configuration, the files, the reporter, the connections."""

    def __init__(
        self,
        config: FrontConfig,
        reporter: DemandReporter | None = None,
        processes: int = 1,
        shares: ConnectionShares | None = None,
    ) -> None:
        self.config = config
        self.shares = shares or ConnectionShares(1)
        self.files = SiteFiles(config.site, CACHE_TOTAL_BYTES // max(1, processes))
        self.routes = Routes()
        self.clock = Clock()
        self.reporter = reporter
        self.connections: set[Connection] = set()
        self.read_digest = hashlib.sha256(config.read_password.encode()).digest() if config.read_password else None
        self.log = AccessLog(config.access_log) if config.access_log else None

    def authorized(self, header: bytes | None) -> bool:
        if self.read_digest is None:
            return True
        if not header or header[:6].lower() != b"basic ":
            return False
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        _, _, password = decoded.partition(b":")
        return hmac.compare_digest(hashlib.sha256(password).digest(), self.read_digest)

    def sweep(self) -> None:
        """Close connections past their deadline (headers too slow, or idle too long)."""
        now = time.monotonic()
        for conn in [c for c in self.connections if c.deadline < now]:
            conn.expire()


async def serve_front(
    config: FrontConfig,
    sock: socket.socket,
    reporter: DemandReporter | None = None,
    *,
    processes: int = 1,
    shares: ConnectionShares | None = None,
    alive: Callable[[], bool] | None = None,
) -> None:
    """Serve on ``sock`` until SIGTERM or SIGINT, or until ``alive()`` (asked every second) is false."""
    front = Front(config, reporter, processes, shares)
    loop = asyncio.get_running_loop()
    acceptor = Acceptor(sock, lambda: Connection(front), front.shares)
    stop = asyncio.Event()

    async def sweeper() -> None:
        while not stop.is_set():
            await asyncio.sleep(1.0)
            front.sweep()
            if front.reporter is not None:
                front.reporter.flush()
            if front.log is not None:
                front.log.flush()
            if alive is not None and not alive():
                stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.create_task(sweeper())
    acceptor.start()
    try:
        await stop.wait()
    finally:
        acceptor.close()
        task.cancel()
        if front.log is not None:
            front.log.flush()


def listen(host: str, port: int) -> socket.socket:
    """The one listening socket of the server; every serving process accepts on it (the socket is
    inherited across ``fork``, as nginx's workers share theirs). Not ``SO_REUSEPORT``: with it a
    second server on the same port would bind too and silently take part of the traffic."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart within TIME_WAIT
        sock.bind((host, port))
        sock.listen(4096)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(f"{host}:{port} is in use by another process") from None
        raise
    sock.setblocking(False)
    return sock


def processes_for(cpus: int | None = None) -> int:
    """How many processes serve: one per CPU (as nginx's ``worker_processes auto``), at most 8."""
    return max(1, min(MAX_PROCESSES, cpus if cpus is not None else len(os.sched_getaffinity(0))))


def run_front(
    config: FrontConfig, sock: socket.socket, processes: int = 1, alive: Callable[[], bool] | None = None
) -> int:
    """Serve on ``sock`` from ``processes`` processes (this one among them) until interrupted or
    until ``alive()`` is false; a serving process that ends stops the others. Returns 0, or 1
    when a serving process ended on its own."""
    reporter = DemandReporter(config.api_url, config.api_token) if config.api_url else None
    shares = ConnectionShares(processes)
    workers: list[int] = []
    for slot in range(1, processes):
        pid = os.fork()
        if pid == 0:  # a serving process: it ends with its parent
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
            shares.me = slot
            code = 1
            try:
                _run_loop(serve_front(config, sock, reporter, processes=processes, shares=shares))
                code = 0
            finally:
                os._exit(code)
        workers.append(pid)
    ended: list[int] = []

    def all_alive() -> bool:
        ended.extend(pid for pid in workers if os.waitpid(pid, os.WNOHANG)[0] == pid)
        return not ended and (alive is None or alive())

    try:
        _run_loop(serve_front(config, sock, reporter, processes=processes, shares=shares, alive=all_alive))
    finally:
        for pid in workers:
            if pid not in ended:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
                os.waitpid(pid, 0)
        if reporter is not None:
            reporter.close()
    return 1 if ended else 0


def _run_loop(main: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(main)
        return
    uvloop.run(main)
