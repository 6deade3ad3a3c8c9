"""The embedded server's file cache keeps large files open for sendfile, a bounded number of them:
descriptors stay for connections however many large files are served, and a replaced file's
descriptor is closed with its entry."""

from __future__ import annotations

import os
from pathlib import Path

from server.index.embedded import SENDFILE_BYTES, SENDFILE_OPEN_FILES, SiteFiles


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_large_files_kept_open_are_bounded_and_closed_when_replaced(tmp_path: Path) -> None:
    count = SENDFILE_OPEN_FILES + 20
    body = os.urandom(SENDFILE_BYTES + 1)
    for i in range(count):
        (tmp_path / f"f{i}").write_bytes(body)
    files = SiteFiles(tmp_path)
    before = _open_descriptors()
    entries = [files.get(f"f{i}") for i in range(count)]
    assert all(e is not None and e.body == body for e in entries)
    assert sum(e.fd is not None for e in entries if e is not None) == SENDFILE_OPEN_FILES
    assert _open_descriptors() - before == SENDFILE_OPEN_FILES
    # A file replaced (a new inode, as every page rewrite is): its old entry's descriptor goes.
    new = os.urandom(SENDFILE_BYTES + 2)
    (tmp_path / "f0.new").write_bytes(new)
    os.replace(tmp_path / "f0.new", tmp_path / "f0")
    fresh = files.get("f0")
    assert fresh is not None and fresh.body == new and fresh.fd is not None
    assert os.pread(fresh.fd, len(new), 0) == new
    assert files.open_files == SENDFILE_OPEN_FILES
    assert _open_descriptors() - before == SENDFILE_OPEN_FILES
