"""What the index holds, from its own files: which projects, and which wheels of each.

The index publishes every file into one directory (``settings.wheel_dir``) and never
removes one, so a listing of it is the truth about what clients can install. The listing
is read again only when the directory changes (its mtime moves with every new file).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from packaging.tags import Tag
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion

from builder.targets import BuildTarget


def project_of(filename: str) -> NormalizedName | None:
    """The PEP 503 name of a wheel or sdist filename; None for any other file."""
    try:
        if filename.endswith(".whl"):
            return parse_wheel_filename(filename)[0]
        if filename.endswith((".tar.gz", ".zip")):
            return parse_sdist_filename(filename)[0]
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None
    return None


def wheel_tags(filename: str) -> frozenset[Tag]:
    try:
        return parse_wheel_filename(filename)[3] if filename.endswith(".whl") else frozenset()
    except (InvalidWheelFilename, InvalidVersion):
        return frozenset()


def serves(filenames: Iterable[str], target: BuildTarget, glibc_max: tuple[int, int] = (2, 28)) -> bool:
    """Whether one of the files is a wheel that installs on ``target`` (packaging.tags, as pip decides)."""
    return any(target.accepts(wheel_tags(f), glibc_max=glibc_max) for f in filenames)


_SETTLED_NS = 1_000_000_000


class Holdings:
    """The index directory's files by project, re-read when the directory changes."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._stamp: int | None = None
        self._read_at = 0
        self._by_project: dict[str, list[str]] = {}

    def files(self, name: str) -> list[str] | None:
        """The files of project ``name`` on the index; None when the index does not hold it."""
        by_project = self._current()
        return by_project.get(canonicalize_name(name))

    def _current(self) -> dict[str, list[str]]:
        try:
            stamp = self.directory.stat().st_mtime_ns
        except FileNotFoundError:
            return {}
        with self._lock:
            # A file linked within the clock tick of the last read leaves the mtime as it was:
            # a listing is trusted only once its directory's mtime is older than a second.
            if stamp != self._stamp or self._read_at - stamp < _SETTLED_NS:
                self._read_at = time.time_ns()
                self._by_project = _read(self.directory)
                self._stamp = stamp
            return self._by_project


def _read(directory: Path) -> dict[str, list[str]]:
    by_project: dict[str, list[str]] = {}
    with os.scandir(directory) as entries:
        for entry in entries:
            # Dot names are the index's staging directories: not published (yet).
            if entry.name.startswith(".") or not entry.is_file():
                continue
            project = project_of(entry.name)
            if project is not None:
                by_project.setdefault(project, []).append(entry.name)
    return by_project
