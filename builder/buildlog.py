"""A build's log: where its output goes as it comes (``BuildLog``, ``FileBuildLog``), and the stored
log, its head and its tail with one marker line between that says how much was left out.

A build's whole output goes to the worker's log file (the diagnosis reads all of it); only the
sandbox's hard cap (``Limits.log_bytes``, 1 GiB by default) ends a build for its output. What is
kept in the build record is smaller: the first ``head`` bytes, written as they come (a live
viewer follows them), and the last ``tail`` bytes, held by the worker and written when the build
ends. A log that fits in both is kept whole.
"""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path
from typing import Protocol

from builder.descriptors import DescriptorOwner

DEFAULT_HEAD_BYTES = 8 * 1024**2
DEFAULT_TAIL_BYTES = 8 * 1024**2
# Room for the marker line in a stored log's size limit.
MARKER_ROOM = 512


class BuildLog(Protocol):
    """Where a build's output goes: stdout and stderr of every hook, merged, as it comes."""

    def write(self, data: bytes) -> None: ...


class FileBuildLog(DescriptorOwner):
    """A build log appended to a file, written through (not buffered), counting bytes."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.bytes_written = 0
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
            self.bytes_written += n


def marker_line(omitted: int) -> bytes:
    return (
        f"wheelyard: log: {omitted} bytes ({omitted / 1024**2:.1f} MiB) of output left out here; the stored log "
        "keeps its head and its tail, the diagnosis read all of it\n"
    ).encode()


def stored_limit(head: int, tail: int) -> int:
    """The largest stored log: head, marker, tail."""
    return head + tail + MARKER_ROOM


class StoredLog:
    """Splits a build's output as it streams: the head (to store at once) and the tail (kept here)."""

    def __init__(self, head: int = DEFAULT_HEAD_BYTES, tail: int = DEFAULT_TAIL_BYTES) -> None:
        self.head = head
        self.tail = tail
        self.received = 0
        self._chunks: deque[bytes] = deque()
        self._held = 0  # bytes in _chunks
        self._dropped = 0  # bytes after the head that fell out of the tail
        self._head_newline = True

    def take(self, data: bytes) -> bytes:
        """Account for ``data``; return the part of it that belongs to the head."""
        room = max(self.head - self.received, 0)
        self.received += len(data)
        head, rest = data[:room], data[room:]
        if head:
            self._head_newline = head.endswith(b"\n")
        if rest:
            self._chunks.append(rest)
            self._held += len(rest)
            while self._held - len(self._chunks[0]) >= self.tail:
                self._held -= len(self._chunks[0])
                self._dropped += len(self._chunks.popleft())
        return head

    def ending(self) -> bytes:
        """What follows the head in the stored log: the rest, or a marker line and the last ``tail`` bytes."""
        data = b"".join(self._chunks)
        excess = max(len(data) - self.tail, 0)
        omitted = self._dropped + excess
        if not omitted:
            return data
        return (b"" if self._head_newline else b"\n") + marker_line(omitted) + data[excess:]


def stored_form(path: Path, head: int = DEFAULT_HEAD_BYTES, tail: int = DEFAULT_TAIL_BYTES) -> bytes:
    """The stored log of a whole log file, read by its two ends (a file of 1 GiB is never read whole)."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        if size <= head + tail:
            return fh.read()
        first = fh.read(head)
        fh.seek(size - tail, os.SEEK_SET)
        last = fh.read(tail)
    return first + (b"" if first.endswith(b"\n") else b"\n") + marker_line(size - head - tail) + last
