"""What the index checks of an uploaded sdist before it becomes visible.

An sdist must be what its filename says: a gzipped tar (or a zip) whose members all sit
under one top-level directory named as the file is (``NAME-VERSION/``), with a ``PKG-INFO``
there whose ``Name`` and ``Version`` are the filename's. Nothing is extracted: members are
only listed and ``PKG-INFO`` read, with limits on both, so a hostile archive costs nothing.
"""

from __future__ import annotations

import email.parser
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from packaging.utils import canonicalize_name, parse_sdist_filename
from packaging.version import InvalidVersion, Version

from builder.errors import SdistRejected

MAX_MEMBERS = 100_000
MAX_PKG_INFO_BYTES = 1 << 20
_HINT = "upload the archive `python -m build --sdist` makes"


def _stem(filename: str) -> str:
    return filename[: -len(".tar.gz")] if filename.endswith(".tar.gz") else filename[: -len(".zip")]


def _check_member(filename: str, top: str, member: str) -> None:
    path = PurePosixPath(member)
    if path.is_absolute() or ".." in path.parts or "\\" in member:
        raise SdistRejected(f"{filename} has a member outside its directory: {member!r}", _HINT)
    if path.parts and path.parts[0] != top:
        raise SdistRejected(
            f"{filename} has a member outside its top-level directory {top}/: {member!r}",
            "an sdist holds one directory, NAME-VERSION/, named as the archive is",
        )


def read_pkg_info(path: Path, filename: str | None = None) -> bytes:
    """The sdist's ``NAME-VERSION/PKG-INFO``, after checking every member's place."""
    filename = filename or path.name
    top = _stem(filename)
    wanted = f"{top}/PKG-INFO"
    try:
        if filename.endswith(".zip"):
            return _zip_pkg_info(path, filename, top, wanted)
        return _tar_pkg_info(path, filename, top, wanted)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        kind = "zip" if filename.endswith(".zip") else "gzipped tar"
        raise SdistRejected(f"{filename} is not a readable {kind} archive: {exc}", _HINT) from None


def _tar_pkg_info(path: Path, filename: str, top: str, wanted: str) -> bytes:
    found: bytes | None = None
    with tarfile.open(path, mode="r:gz") as tf:
        for count, member in enumerate(tf, start=1):
            if count > MAX_MEMBERS:
                raise SdistRejected(f"{filename} has more than {MAX_MEMBERS} members", _HINT)
            _check_member(filename, top, member.name)
            if member.name == wanted and member.isfile() and found is None:
                if member.size > MAX_PKG_INFO_BYTES:
                    raise SdistRejected(f"{filename}'s PKG-INFO is {member.size} bytes; at most {MAX_PKG_INFO_BYTES}")
                fh = tf.extractfile(member)
                found = fh.read() if fh is not None else None
    if found is None:
        raise SdistRejected(f"{filename} has no {wanted}", _HINT)
    return found


def _zip_pkg_info(path: Path, filename: str, top: str, wanted: str) -> bytes:
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise SdistRejected(f"{filename} has more than {MAX_MEMBERS} members", _HINT)
        for info in infos:
            _check_member(filename, top, info.filename)
        try:
            info = zf.getinfo(wanted)
        except KeyError:
            raise SdistRejected(f"{filename} has no {wanted}", _HINT) from None
        if info.file_size > MAX_PKG_INFO_BYTES:
            raise SdistRejected(f"{filename}'s PKG-INFO is {info.file_size} bytes; at most {MAX_PKG_INFO_BYTES}")
        with zf.open(info) as fh:
            return fh.read(MAX_PKG_INFO_BYTES)


def verify_sdist(path: Path, filename: str | None = None) -> None:
    """Refuse (``SdistRejected``) an archive that is not an sdist of the name and version in its filename."""
    filename = filename or path.name
    name, version = parse_sdist_filename(filename)
    headers = email.parser.BytesHeaderParser().parsebytes(read_pkg_info(path, filename))
    meta_name, meta_version = headers.get("Name"), headers.get("Version")
    if not meta_name or not meta_version:
        raise SdistRejected(f"{filename}'s PKG-INFO has no Name or no Version", _HINT)
    if canonicalize_name(str(meta_name)) != name:
        raise SdistRejected(f"{filename}'s PKG-INFO names the project {meta_name!r}, not {str(name)!r}", _HINT)
    try:
        same = Version(str(meta_version)) == version
    except InvalidVersion:
        same = False
    if not same:
        raise SdistRejected(f"{filename}'s PKG-INFO gives the version {meta_version!r}, not {str(version)!r}", _HINT)
