"""Connections of one listening socket shared out evenly among the embedded server's processes.

Every serving process waits on the same inherited listening socket, and the kernel wakes them
all for a new connection: whichever calls ``accept`` first takes it. Left alone, one process can
end up with most of a client's keep-alive connections (43 of wrk's 50, seen here) while the
other idles, and the busy one's queue is the tail latency. So each process counts the
connections it holds in a table all of them share (anonymous shared memory, made before the
fork; each process writes only its own slot), and one that holds more than the least loaded
process plus ``SLACK`` leaves the next connection to the others for ``DEFER_SECONDS``; if no
other process has taken it by then (all busy), it takes it itself, so no connection waits longer.
"""

from __future__ import annotations

import asyncio
import errno
import mmap
import socket
from collections.abc import Callable

SLACK = 1
DEFER_SECONDS = 0.002
BATCH = 16  # connections accepted at most per wake-up
# Out of descriptors (or memory): try again later, not in a busy loop.
_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_EXHAUSTED_PAUSE = 0.1


class ConnectionShares:
    """How many connections each serving process holds, readable by all of them."""

    def __init__(self, processes: int) -> None:
        self.memory = mmap.mmap(-1, 8 * max(1, processes))  # MAP_SHARED: the same pages after fork
        self.counts = memoryview(self.memory).cast("q")
        self.me = 0

    def over_share(self) -> bool:
        counts = self.counts
        return len(counts) > 1 and counts[self.me] > min(counts) + SLACK

    def opened(self) -> None:
        self.counts[self.me] += 1

    def closed(self) -> None:
        self.counts[self.me] -= 1


class Acceptor:
    """Accepts on ``sock`` for this process's loop, leaving connections to less loaded processes."""

    def __init__(self, sock: socket.socket, factory: Callable[[], asyncio.Protocol], shares: ConnectionShares) -> None:
        self.sock = sock
        self.factory = factory
        self.shares = shares
        self.loop = asyncio.get_running_loop()
        self.forced = False
        self.open = False
        self.pending: set[asyncio.Task[object]] = set()

    def start(self) -> None:
        self.open = True
        self.loop.add_reader(self.sock.fileno(), self._readable)

    def close(self) -> None:
        if self.open:
            self.open = False
            self.loop.remove_reader(self.sock.fileno())

    def _pause(self, seconds: float) -> None:
        self.loop.remove_reader(self.sock.fileno())
        self.loop.call_later(seconds, self._resume)

    def _resume(self) -> None:
        if self.open:
            self.forced = True
            self.loop.add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        if not self.forced and self.shares.over_share():
            self._pause(DEFER_SECONDS)  # the others were woken too: one of them takes it
            return
        self.forced = False
        for _ in range(BATCH):
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno in _EXHAUSTED:
                    self._pause(_EXHAUSTED_PAUSE)
                    return
                raise
            self._take(conn)
            if self.shares.over_share():
                return

    def _take(self, conn: socket.socket) -> None:
        conn.setblocking(False)
        self.shares.opened()  # counted at once: the next wake-up already sees it
        task: asyncio.Task[object] = self.loop.create_task(self.loop.connect_accepted_socket(self.factory, conn))
        self.pending.add(task)
        task.add_done_callback(lambda done: self._taken(done, conn))

    def _taken(self, task: asyncio.Task[object], conn: socket.socket) -> None:
        self.pending.discard(task)
        if task.cancelled() or task.exception() is not None:
            self.shares.closed()  # never became a connection (the client went away at once)
            conn.close()
