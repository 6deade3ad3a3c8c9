"""Where a build's output goes: the worker's log file and, through a sink, the shared record,
with the worker's secrets written as ``***`` in both."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from builder.buildlog import FileBuildLog
from builder.secrets import Redactor


class BuildLog(FileBuildLog):
    """Where a build's output goes: a file on the worker and, through ``sink``, the shared record."""

    def __init__(self, path: Path, sink: Callable[[bytes], object] | None = None) -> None:
        super().__init__(path)
        self._sink = sink
        self.redactor = Redactor(())

    def redact(self, secrets: Sequence[str]) -> None:
        """From now on, ``secrets`` are written as ``***`` (to the file and to the sink)."""
        self.flush()
        self.redactor = Redactor(secrets)

    def write(self, data: bytes) -> None:
        self._emit(self.redactor.feed(data))

    def _emit(self, data: bytes) -> None:
        if data:
            super().write(data)
            if self._sink is not None:
                self._sink(data)

    def flush(self) -> None:
        """Write what the redactor holds back (the start of what could have been a secret)."""
        self._emit(self.redactor.flush())

    def line(self, text: str) -> None:
        self.write((text.rstrip("\n") + "\n").encode())
        self.flush()

    def _release(self) -> None:
        # What the redactor still holds goes to the file before it is closed.
        self.flush()
