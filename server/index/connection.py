"""One client connection of the embedded index server (``server/index/embedded.py``).

HTTP/1.1 with keep-alive and pipelining, parsed by hand: a request is its head (up to
``MAX_HEAD_BYTES``), since the static side takes no bodies. Whatever is not a read of the
site tree goes, head and body, to the upload endpoint over a connection of its own
(``Upstream``), with ``Connection: close`` so the end of its answer is the end of the tunnel.
"""

from __future__ import annotations

import asyncio
import os
import time
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from server.index.embedded import Cached, Front

MAX_HEAD_BYTES = 64 * 1024
STREAM_CHUNK = 256 * 1024
TUNNEL_IDLE_SECONDS = 3600.0  # the upload endpoint's own timeouts govern a tunnelled request
_REASONS = {
    200: b"OK",
    206: b"Partial Content",
    301: b"Moved Permanently",
    304: b"Not Modified",
    400: b"Bad Request",
    401: b"Unauthorized",
    404: b"Not Found",
    406: b"Not Acceptable",
    416: b"Range Not Satisfiable",
    431: b"Request Header Fields Too Large",
    502: b"Bad Gateway",
}
_HOP_HEADERS = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"upgrade"})
_CHALLENGE = b'WWW-Authenticate: Basic realm="wheelyard"\r\n'
_OK = b"HTTP/1.1 200 OK\r\nServer: wheelyard\r\nDate: "
# Headers that make an answer other than a plain 200 with the whole body.
_CONDITIONAL = frozenset({b"if-none-match", b"if-modified-since", b"range"})
_JOIN_BYTES = 64 * 1024  # bodies up to this size are sent joined with their headers, in one write


def _byte_range(spec: bytes, size: int) -> tuple[int, int] | None | bool:
    """(start, end inclusive) of a single ``bytes=`` range; None: ignore it (serve whole);
    False: unsatisfiable (416)."""
    unit, _, ranges = spec.partition(b"=")
    if unit.strip() != b"bytes" or b"," in ranges:
        return None
    first, sep, last = ranges.strip().partition(b"-")
    if not sep:
        return None
    try:
        if not first:
            length = int(last)
            if length <= 0:
                return False
            return max(0, size - length), size - 1
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size or end < start:
        return False
    return start, min(end, size - 1)


class Connection(asyncio.Protocol):
    def __init__(self, front: Front) -> None:
        self.front = front
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.deadline = time.monotonic() + front.config.header_timeout
        self.tunnel: Upstream | None = None
        self.stream: tuple[int, int] | None = None  # (fd, bytes left) of a file being sent
        self.paused = False
        self.close_after = False
        self.peer = "-"
        self.fd = -1  # the socket's descriptor, for sendfile

    # -- asyncio callbacks --------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses
        self.front.connections.add(self)
        sock = transport.get_extra_info("socket")
        self.fd = sock.fileno() if sock is not None else -1
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if peer else "-"

    def connection_lost(self, exc: Exception | None) -> None:
        self.front.connections.discard(self)
        self.front.shares.closed()
        self._end_stream()
        if self.tunnel is not None:
            self.tunnel.close()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.send(data)
            return
        self.buf = self.buf + data if self.buf else data
        if self.stream is None:
            self._process()

    def pause_writing(self) -> None:
        self.paused = True
        if self.tunnel is not None:
            self.tunnel.pause_reading()

    def resume_writing(self) -> None:
        self.paused = False
        if self.tunnel is not None:
            self.tunnel.resume_reading()
        elif self.stream is not None:
            self._pump()

    def expire(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- requests -----------------------------------------------------------------------
    def _process(self) -> None:
        while self.transport is not None and self.tunnel is None and self.stream is None and not self.close_after:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEAD_BYTES:
                    self._simple(431, b"the request's headers are too large\n", close=True)
                return
            head, self.buf = self.buf[:end], self.buf[end + 4 :]
            self._request(head)
        if self.close_after and self.stream is None and self.transport is not None:
            self.transport.close()

    def _request(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            self._simple(400, b"malformed request line\n", close=True)
            return
        method, target, version = parts
        if self.front.log is not None:
            self._last_target = f"{method.decode('latin-1')} {target.decode('latin-1')}"
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            key, sep, value = line.partition(b":")
            if not sep:
                self._simple(400, b"malformed header line\n", close=True)
                return
            headers[key.strip().lower()] = value.strip()
        connection = headers.get(b"connection", b"").lower()
        keep_alive = (version == b"HTTP/1.1" and b"close" not in connection) or b"keep-alive" in connection
        static = method in (b"GET", b"HEAD") and (target.startswith(b"/simple/") or target.startswith(b"/packages/"))
        if not static or b"content-length" in headers or b"transfer-encoding" in headers:
            self._start_tunnel(lines, headers)
            return
        self.deadline = time.monotonic() + self.front.config.keepalive_timeout
        if not keep_alive:
            self.close_after = True
        self._static(method == b"HEAD", target, headers)

    def _static(self, head_only: bool, target: bytes, headers: dict[bytes, bytes]) -> None:
        front = self.front
        if not front.authorized(headers.get(b"authorization")):
            self._simple(401, b"this index needs the read password\n", extra=_CHALLENGE, head_only=head_only)
            return
        route = front.routes.get(target, headers.get(b"accept"), headers.get(b"accept-encoding"))
        if route.report is not None and front.reporter is not None:
            front.reporter.report(route.report, headers.get(b"user-agent"))
        if route.status:
            self._simple(route.status, route.text, extra=route.extra, head_only=head_only or route.bodyless)
            return
        for rel, extra in route.candidates:
            entry = front.files.get(rel)
            if entry is not None:
                self._send(entry, route.ctype, headers, head_only, ranges=route.ranges, extra=extra)
                return
        self._simple(404, route.missing, head_only=head_only, extra=route.missing_extra)

    def _send(
        self,
        entry: Cached,
        ctype: bytes,
        headers: dict[bytes, bytes],
        head_only: bool,
        *,
        ranges: bool,
        extra: bytes = b"",
    ) -> None:
        if entry.body is not None and not head_only and not self.close_after and not _CONDITIONAL & headers.keys():
            self._send_whole(entry, ctype, extra + (b"Accept-Ranges: bytes\r\n" if ranges else b""))
            return
        etag = entry.etag.encode()
        validators = entry.validators()
        if _not_modified(headers, etag, entry.mtime):
            self._write(304, validators + extra, b"", None)
            return
        start, length, status = 0, entry.size, 200
        spec = headers.get(b"range") if ranges else None
        if spec is not None and headers.get(b"if-range", etag) in (etag, entry.last_modified.encode()):
            chosen = _byte_range(spec, entry.size)
            if chosen is False:
                self._simple(416, b"", extra=f"Content-Range: bytes */{entry.size}\r\n".encode())
                return
            if chosen:
                start, end = chosen  # type: ignore[misc]
                length, status = end - start + 1, 206
                extra += f"Content-Range: bytes {start}-{end}/{entry.size}\r\n".encode()
        if ranges:
            extra += b"Accept-Ranges: bytes\r\n"
        head = validators + b"Content-Type: " + ctype + b"\r\n" + extra
        if head_only:
            self._write(status, head, b"", length)
        elif entry.body is not None:
            self._write(status, head, entry.body[start : start + length], length)
        else:
            self._write(status, head, b"", length)
            self._open_stream(entry.path, start, length)

    # -- writing ------------------------------------------------------------------------
    def _send_whole(self, entry: Cached, ctype: bytes, extra: bytes) -> None:
        """A 200 with the whole (cached) body: the headers rendered once, a write or two."""
        assert self.transport is not None and entry.body is not None
        head = entry.heads.get((ctype, extra))
        if head is None:
            length = str(entry.size).encode()
            head = entry.validators() + b"Content-Type: " + ctype + b"\r\n" + extra
            head = entry.heads[(ctype, extra)] = head + b"Content-Length: " + length + b"\r\n\r\n"
        if entry.size <= _JOIN_BYTES:
            self.transport.write(b"".join((_OK, self.front.clock.date(), b"\r\n", head, entry.body)))
        else:
            self._send_large(entry, b"".join((_OK, self.front.clock.date(), b"\r\n", head)))
        if self.front.log is not None:
            self.front.log.write(f"{self.peer} 200 {entry.size} {self._last_target}\n")

    def _send_large(self, entry: Cached, head: bytes) -> None:
        """A large body from the page cache by ``sendfile`` as far as the socket takes it now (no
        copy through this process: a large page cost twice the system time by ``write``), the
        rest from memory through the transport, which keeps the order of what it was given."""
        assert self.transport is not None and entry.body is not None
        transport = self.transport
        transport.write(head)  # written at once when nothing is queued before it
        sent = 0
        if entry.fd is not None and self.fd >= 0 and not transport.get_write_buffer_size():
            try:
                while sent < entry.size:
                    done = os.sendfile(self.fd, entry.fd, sent, entry.size - sent)
                    if not done:
                        break
                    sent += done
            except BlockingIOError:
                pass  # the socket is full: the transport sends the rest when it drains
            except OSError:
                transport.abort()  # the client is gone
                return
        if sent < entry.size:
            transport.write(memoryview(entry.body)[sent:])

    def _write(self, status: int, head: bytes, body: bytes, length: int | None) -> None:
        assert self.transport is not None
        out = [
            b"HTTP/1.1 ",
            str(status).encode(),
            b" ",
            _REASONS.get(status, b"Unknown"),
            b"\r\nServer: wheelyard\r\nDate: ",
            self.front.clock.date(),
            b"\r\n",
            head,
        ]
        if length is not None:
            out += [b"Content-Length: ", str(length).encode(), b"\r\n"]
        if self.close_after:
            out.append(b"Connection: close\r\n")
        out += [b"\r\n", body]
        self.transport.write(b"".join(out))
        if self.front.log is not None:
            self.front.log.write(f"{self.peer} {status} {length or 0} {self._last_target}\n")

    _last_target = "-"

    def _simple(
        self, status: int, text: bytes, *, extra: bytes = b"", close: bool = False, head_only: bool = False
    ) -> None:
        if close:
            self.close_after = True
        body = b"" if head_only else text
        self._write(status, extra + b"Content-Type: text/plain; charset=utf-8\r\n", body, len(text))
        if close and self.transport is not None:
            self.transport.close()

    def _open_stream(self, path: str, start: int, length: int) -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            self.close_after = True  # the headers are out: all that can be done is to stop
            if self.transport is not None:
                self.transport.close()
            return
        os.lseek(fd, start, os.SEEK_SET)
        self.stream = (fd, length)
        self._pump()

    def _pump(self) -> None:
        while self.stream is not None and not self.paused and self.transport is not None:
            fd, left = self.stream
            chunk = os.read(fd, min(STREAM_CHUNK, left))
            if not chunk:
                self.transport.close()  # the file shrank: it cannot, but never send short silently
                self._end_stream()
                return
            left -= len(chunk)
            self.stream = (fd, left)
            self.transport.write(chunk)
            if left == 0:
                self._end_stream()
                self._process()

    def _end_stream(self) -> None:
        if self.stream is not None:
            os.close(self.stream[0])
            self.stream = None

    # -- the upload endpoint ------------------------------------------------------------
    def _start_tunnel(self, lines: list[bytes], headers: dict[bytes, bytes]) -> None:
        assert self.transport is not None
        kept = [line for line in lines[1:] if line.partition(b":")[0].strip().lower() not in _HOP_HEADERS]
        forwarded = f"X-Forwarded-For: {self.peer}".encode()
        head = b"\r\n".join([lines[0], *kept, forwarded, b"Connection: close"]) + b"\r\n\r\n"
        tunnel = self.tunnel = Upstream(self, head + self.buf)
        self.buf = b""
        self.deadline = time.monotonic() + TUNNEL_IDLE_SECONDS
        loop = asyncio.get_running_loop()
        config = self.front.config
        task = loop.create_task(loop.create_connection(lambda: tunnel, config.upload_host, config.upload_port))
        task.add_done_callback(self._tunnel_connected)

    def _tunnel_connected(self, task: asyncio.Task[object]) -> None:
        if task.cancelled() or task.exception() is not None:
            self.tunnel = None
            self._simple(502, b"the upload endpoint of this index is not answering\n", close=True)


class Upstream(asyncio.Protocol):
    """The connection to the upload endpoint for one tunnelled request."""

    def __init__(self, client: Connection, pending: bytes) -> None:
        self.client = client
        self.pending: list[bytes] = [pending]
        self.transport: asyncio.Transport | None = None
        self.done = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(b"".join(self.pending))
        self.pending = []
        if self.done:
            self.transport.close()

    def send(self, data: bytes) -> None:
        if self.transport is None:
            self.pending.append(data)
        else:
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        if self.client.transport is not None:
            self.client.transport.write(data)
            self.client.deadline = time.monotonic() + TUNNEL_IDLE_SECONDS

    def connection_lost(self, exc: Exception | None) -> None:
        if self.client.transport is not None:
            self.client.transport.close()

    def pause_writing(self) -> None:
        if self.client.transport is not None:
            self.client.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.client.transport is not None:
            self.client.transport.resume_reading()

    def pause_reading(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    def close(self) -> None:
        self.done = True
        if self.transport is not None:
            self.transport.close()


def _not_modified(headers: dict[bytes, bytes], etag: bytes, mtime: float) -> bool:
    match = headers.get(b"if-none-match")
    if match is not None:
        return match.strip() == b"*" or etag in (m.strip().removeprefix(b"W/") for m in match.split(b","))
    since = headers.get(b"if-modified-since")
    if since is None:
        return False
    try:
        return int(mtime) <= parsedate_to_datetime(since.decode("latin-1")).timestamp()
    except (TypeError, ValueError, IndexError):
        return False
