"""Unpack an sdist, a stranger's archive, inside the limits of its build.

The worker unpacks the sdist itself, outside the sandbox and before any limit of the sandbox
applies, so the archive is checked whole BEFORE anything is written: every member must be a
plain file or a directory with a relative path that stays inside the project (no ``..``, no
absolute path, no drive, no NUL), the number of members must stay under the build's file-count
limit and the sum of their uncompressed sizes under its disk limit. A 3 GiB file of zeros
in a 3 MB ``.tar.gz`` is refused from its header, without inflating it. Only then is it
extracted, member by member, by this module (not ``extractall``): files are created new
(``O_EXCL | O_NOFOLLOW``), with at most the size the archive declared, and the bytes written
are counted again against the limit.

Symlinks, hard links, devices, FIFOs and sparse members are refused: an sdist has no use
for them and each is a way out of the directory or around the accounting.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from builder.errors import UnsafeSdist

__all__ = ["UnsafeSdist", "UnpackLimits", "unpack_sdist"]

_CHUNK = 1 << 20


@dataclass(frozen=True)
class UnpackLimits:
    """What an sdist may hold: bytes uncompressed in all (the build's disk limit) and members
    (the build's file-count limit)."""

    max_bytes: int
    max_files: int


@dataclass(frozen=True)
class _Member:
    name: str  # the normalised relative path
    is_dir: bool
    size: int
    executable: bool
    mtime: float


def _fail(archive: Path, what: str, hint: str | None = None) -> UnsafeSdist:
    return UnsafeSdist(f"{archive.name}: {what}", hint)


def _over(error: UnsafeSdist, cause: str, limit: int) -> UnsafeSdist:
    error.cause, error.limit = cause, limit
    return error


def _safe_name(archive: Path, raw: str) -> str:
    name = raw.replace("\\", "/")
    path = PurePosixPath(name)
    if "\x00" in name or path.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise _fail(archive, f"member {raw!r} has an absolute path")
    parts = [p for p in path.parts if p not in ("", ".")]
    if ".." in parts:
        raise _fail(archive, f"member {raw!r} leads outside the project directory ('..')")
    if not parts:
        raise _fail(archive, f"member {raw!r} has an empty name")
    return "/".join(parts)


class _Budget:
    """Counts members and bytes against the limits while the archive is read."""

    def __init__(self, archive: Path, limits: UnpackLimits) -> None:
        self.archive = archive
        self.limits = limits
        self.files = 0
        self.bytes = 0

    def add(self, size: int) -> None:
        self.files += 1
        self.bytes += max(size, 0)
        if self.files > self.limits.max_files:
            raise _over(
                _fail(
                    self.archive,
                    f"holds more than {self.limits.max_files} members (the build's file-count limit)",
                    "raise WHEELYARD_BUILD_FILES if the project really has that many files",
                ),
                "too-many-files",
                self.limits.max_files,
            )
        self.check_bytes()

    def check_bytes(self) -> None:
        if self.bytes > self.limits.max_bytes:
            raise _over(
                _fail(
                    self.archive,
                    f"unpacks to more than {self.limits.max_bytes} bytes (the build's disk limit)",
                    "raise WHEELYARD_BUILD_DISK if the project really is that big",
                ),
                "disk-full",
                self.limits.max_bytes,
            )


def _tar_members(archive: Path, tf: tarfile.TarFile, budget: _Budget) -> Iterator[tuple[_Member, tarfile.TarInfo]]:
    # Iterating reads one header at a time: a member over the limit is refused from its header,
    # before its data is inflated.
    for info in tf:
        name = _safe_name(archive, info.name)
        if info.issym() or info.islnk():
            raise _fail(archive, f"member {info.name!r} is a {'symbolic' if info.issym() else 'hard'} link")
        if info.issparse():
            raise _fail(archive, f"member {info.name!r} is a sparse file")
        if not (info.isreg() or info.isdir()):
            raise _fail(archive, f"member {info.name!r} is a device, FIFO or other special file")
        budget.add(info.size if info.isreg() else 0)
        member = _Member(name, info.isdir(), info.size, bool(info.mode & 0o100), float(info.mtime))
        yield member, info


def _zip_members(archive: Path, zf: zipfile.ZipFile, budget: _Budget) -> list[tuple[_Member, zipfile.ZipInfo]]:
    out = []
    for info in zf.infolist():
        name = _safe_name(archive, info.filename)
        mode = info.external_attr >> 16
        kind = stat.S_IFMT(mode)
        if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
            raise _fail(archive, f"member {info.filename!r} is a link or special file")
        budget.add(0 if info.is_dir() else info.file_size)
        mtime = 315532800.0
        out.append((_Member(name, info.is_dir(), info.file_size, bool(mode & 0o100), mtime), info))
    return out


def _write_file(dest: Path, member: _Member, source: IO[bytes], budget: _Budget, archive: Path) -> None:
    target = dest / member.name
    target.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(target, flags, 0o755 if member.executable else 0o644)
    left = member.size
    try:
        while left > 0:
            chunk = source.read(min(_CHUNK, left))
            if not chunk:
                break
            os.write(fd, chunk)
            left -= len(chunk)
            budget.bytes += len(chunk)
        if source.read(1):
            raise _fail(archive, f"member {member.name!r} holds more data than its header says")
    finally:
        os.close(fd)
    budget.check_bytes()
    with contextlib.suppress(OSError, OverflowError, ValueError):  # a timestamp out of range is not kept
        os.utime(target, (member.mtime, member.mtime))


def _check_tar(archive: Path, limits: UnpackLimits) -> None:
    with tarfile.open(archive) as tf:
        for _ in _tar_members(archive, tf, _Budget(archive, limits)):
            pass


def _extract_tar(archive: Path, dest: Path, limits: UnpackLimits) -> None:
    budget = _Budget(archive, limits)
    extracted = _Budget(archive, limits)
    with tarfile.open(archive) as tf:
        for member, info in _tar_members(archive, tf, budget):
            if member.is_dir:
                (dest / member.name).mkdir(parents=True, exist_ok=True)
                continue
            source = tf.extractfile(info)
            if source is None:
                raise _fail(archive, f"member {info.name!r} cannot be read")
            with source:
                _write_file(dest, member, source, extracted, archive)


def _extract_zip(archive: Path, dest: Path, limits: UnpackLimits) -> None:
    with zipfile.ZipFile(archive) as zf:
        # The central directory lists every member up front: all are checked before any is written.
        members = _zip_members(archive, zf, _Budget(archive, limits))
        extracted = _Budget(archive, limits)
        for member, info in members:
            if member.is_dir:
                (dest / member.name).mkdir(parents=True, exist_ok=True)
                continue
            with zf.open(info) as source:
                _write_file(dest, member, source, extracted, archive)


def unpack_sdist(archive: Path, dest: Path, limits: UnpackLimits) -> Path:
    """Check ``archive`` whole, then unpack it into ``dest``; return its project directory.

    Raises :class:`UnsafeSdist` (reference ``unsafe-sdist``) for anything not unpacked, and
    before writing anything for every check that the archive's index allows (all for a zip;
    for a tar the headers are read in a first pass).
    """
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if archive.name.endswith(".zip"):
            _extract_zip(archive, dest, limits)
        else:
            _check_tar(archive, limits)
            _extract_tar(archive, dest, limits)
    except UnsafeSdist:
        raise
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as exc:
        raise _fail(archive, f"cannot be unpacked: {exc}") from exc
    entries = [p for p in dest.iterdir() if p.is_dir()]
    if len(entries) == 1 and any((entries[0] / f).is_file() for f in ("pyproject.toml", "setup.py")):
        return entries[0]
    raise _fail(archive, "does not hold one project directory with pyproject.toml or setup.py")
