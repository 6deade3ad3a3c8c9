"""The upload endpoint's storage: pypiserver's directory backend, with atomic, verified, write-once uploads.

An upload is written to a hidden staging directory next to the wheels (its name starts with
a dot, so pypiserver never lists it), fsynced, verified, and then published with ``os.link``.
Linking fails if the name exists, so of two concurrent uploads of one filename exactly one
wins; nobody ever sees a partial file, and a published filename is never replaced or removed.
Once linked, its project's static pages are rewritten before the upload is answered.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, BinaryIO

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    parse_sdist_filename,
    parse_wheel_filename,
)
from pypiserver.backend import SimpleFileBackend

from builder.errors import AlreadyPublished, InvalidUpload, RemovalRefused
from builder.verify import verify_wheel
from server.index.sdist_check import verify_sdist
from server.index.site import IndexSite

log = logging.getLogger(__name__)

MAX_FILENAME_LENGTH = 200
STAGING_PREFIX = ".upload-"
# Staging directories older than this are left over from a crash and are removed at start.
STALE_STAGING_SECONDS = 24 * 3600
_CHUNK = 1 << 20
_FILENAME_CHARS = re.compile(r"^[A-Za-z0-9._+!-]+$")


def validate_upload_filename(filename: str) -> None:
    """Refuse anything but a plain wheel or sdist filename."""
    if not filename:
        raise InvalidUpload("the upload has no filename")
    if len(filename) > MAX_FILENAME_LENGTH:
        raise InvalidUpload(f"the filename is {len(filename)} characters long; at most {MAX_FILENAME_LENGTH}")
    if "/" in filename or "\\" in filename or "\x00" in filename:
        raise InvalidUpload(f"the filename {filename!r} contains a path separator")
    if ".." in filename:
        raise InvalidUpload(f"the filename {filename!r} contains '..'")
    if filename.startswith("."):
        raise InvalidUpload(f"the filename {filename!r} starts with a dot")
    if not _FILENAME_CHARS.match(filename):
        raise InvalidUpload(f"the filename {filename!r} has characters other than letters, digits and ._+!-")
    try:
        if filename.endswith(".whl"):
            parse_wheel_filename(filename)
        else:
            parse_sdist_filename(filename)
    except InvalidWheelFilename as exc:
        raise InvalidUpload(f"{filename!r} is not a valid wheel filename: {exc}") from None
    except InvalidSdistFilename:
        raise InvalidUpload(
            f"{filename!r} is neither a wheel (.whl) nor an sdist (.tar.gz, .zip)",
            "the index accepts wheels and source distributions only",
        ) from None


class ImmutableFileBackend(SimpleFileBackend):  # type: ignore[misc]
    """pypiserver's directory backend, with atomic, verified, write-once uploads."""

    def __init__(self, config: Any, site: IndexSite | None = None) -> None:
        super().__init__(config)
        self.root: Path = self.roots[0]
        self.site = site

    def exists(self, filename: str) -> bool:
        validate_upload_filename(filename)
        return (self.root / filename).is_file()

    def add_package(self, filename: str, stream: BinaryIO) -> None:
        validate_upload_filename(filename)
        final = self.root / filename
        if final.exists():
            raise _already_published(filename)
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.root))
        offset = stream.tell()
        try:
            staged = staging / filename
            _write_synced(stream, staged)
            sha256 = None
            if filename.endswith(".whl"):
                sha256 = verify_wheel(staged).sha256
            else:
                verify_sdist(staged, filename)
            try:
                os.link(staged, final)
            except FileExistsError:
                raise _already_published(filename) from None
            _fsync_dir(self.root)
        finally:
            stream.seek(offset)
            shutil.rmtree(staging, ignore_errors=True)
        if self.site is not None:
            self.site.publish(filename, sha256=sha256)
        log.info("published %s", filename)

    def remove_package(self, pkg: Any) -> None:
        raise RemovalRefused(f"{pkg.relfn} cannot be removed: files on this index are never removed or replaced")


def _already_published(filename: str) -> AlreadyPublished:
    return AlreadyPublished(
        f"{filename} already exists on the index; published files are never replaced",
        "publish a new version (or a new build tag) instead",
    )


def _write_synced(stream: BinaryIO, path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as out:
        for chunk in iter(lambda: stream.read(_CHUNK), b""):
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_staging(root: Path, *, older_than: float = STALE_STAGING_SECONDS) -> None:
    """Remove staging directories a crashed upload left behind."""
    cutoff = time.time() - older_than
    for entry in root.glob(STAGING_PREFIX + "*"):
        try:
            if entry.is_dir() and entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry, ignore_errors=True)
        except FileNotFoundError:
            continue
