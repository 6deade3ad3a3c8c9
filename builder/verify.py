"""The checks a wheel passes before it may be published.

``verify_wheel`` opens a built (or uploaded) wheel and checks what pip and the wheel
spec rely on: the filename grammar, the zip itself, the ``.dist-info`` files, that
METADATA agrees with the filename, that RECORD lists every file with the right hash
and size, and that no member escapes the install directory. Optionally it checks that
the wheel is the one that was asked for (name, version) and that it installs on a
build target. Every failure is a ``WheelRejected`` that names exactly what is wrong.

``take_wheel`` takes a wheel out of a build's reach before anything reads it.
``sha256_file`` is the one hashing helper the project uses.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import shutil
import stat
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from pathlib import Path, PurePosixPath

from packaging.metadata import parse_email
from packaging.tags import Tag
from packaging.utils import (
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from builder.errors import InvalidWheelName, WheelRejected
from builder.targets import BuildTarget

_CHUNK = 1 << 20
# Any manylinux glibc is fine for a built wheel; a plain linux_* tag is not.
_VERIFY_GLIBC_MAX = (2, 99)
# Hashes the wheel spec allows in RECORD: sha256 or stronger.
_RECORD_ALGORITHMS = frozenset({"sha256", "sha384", "sha512", "sha3_256", "sha3_384", "sha3_512", "blake2b"})
# Files of the .dist-info directory that RECORD cannot hash (itself) or need not list.
_UNHASHED = frozenset({"RECORD", "RECORD.jws", "RECORD.p7s"})


@dataclass(frozen=True)
class WheelInfo:
    """What a verified wheel is: its identity, tags and content hash."""

    filename: str
    name: NormalizedName
    version: str
    tags: frozenset[Tag]
    sha256: str
    size: int


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def take_wheel(built: Path, outdir: Path, dest_dir: Path) -> Path:
    """Copy the wheel a build wrote into ``dest_dir`` (a directory the build's user cannot
    reach) and return the copy: a file named as a wheel, directly in ``outdir``, regular, and
    never read through a link (a build could point its "wheel" at /etc/shadow)."""
    name = built.name
    try:
        parse_wheel_filename(name)
    except InvalidWheelFilename as exc:
        raise InvalidWheelName(name, exc) from None
    if built.parent != outdir:
        raise WheelRejected(f"the build backend returned a wheel outside its output directory: {built}")
    dest_dir.mkdir(exist_ok=True)
    taken = dest_dir / name
    try:
        fd = os.open(built, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise WheelRejected(
            f"the build's wheel {name} cannot be read: {exc.strerror}",
            "build_wheel must write a regular file (not a link) into its output directory",
        ) from None
    with os.fdopen(fd, "rb") as src:
        if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
            raise WheelRejected(f"the build's wheel {name} is not a regular file")
        with taken.open("xb") as dst:
            shutil.copyfileobj(src, dst, _CHUNK)
    return taken


def verify_wheel(
    path: Path,
    *,
    name: str | None = None,
    version: str | None = None,
    target: BuildTarget | None = None,
) -> WheelInfo:
    """Check the wheel at ``path``; return what it is, or raise ``WheelRejected``."""
    filename = path.name
    try:
        wheel_name, wheel_version, _build, tags = parse_wheel_filename(filename)
    except InvalidWheelFilename as exc:
        raise WheelRejected(
            f"{filename!r} is not a valid wheel filename: {exc}",
            "a wheel is named NAME-VERSION(-BUILD)?-PYTHON-ABI-PLATFORM.whl",
        ) from None

    try:
        with zipfile.ZipFile(path) as archive:
            _check_archive(archive, filename, wheel_name, wheel_version)
    except zipfile.BadZipFile as exc:
        raise WheelRejected(f"{filename} is not a valid zip file: {exc}") from None
    except OSError as exc:
        raise WheelRejected(f"cannot read {filename}: {exc.strerror or exc}") from None

    if name is not None and canonicalize_name(name) != wheel_name:
        raise WheelRejected(f"{filename} is a wheel of {wheel_name!r}, but {name!r} was requested")
    if version is not None and _parse_version(version, "the requested version") != wheel_version:
        raise WheelRejected(f"{filename} is version {wheel_version}, but {version} was requested")
    if target is not None and not target.accepts(tags, glibc_max=_VERIFY_GLIBC_MAX):
        raise WheelRejected(
            f"{filename} does not install on {target}: its tags are {', '.join(sorted(str(t) for t in tags))}",
            "a Linux wheel must carry a manylinux/musllinux tag (repair it with auditwheel)"
            if target.os == "linux"
            else None,
        )

    return WheelInfo(
        filename=filename,
        name=wheel_name,
        version=str(wheel_version),
        tags=frozenset(tags),
        sha256=sha256_file(path),
        size=path.stat().st_size,
    )


def _parse_version(text: str, what: str) -> Version:
    try:
        return Version(text)
    except InvalidVersion:
        raise WheelRejected(f"{what} {text!r} is not a valid version") from None


def _check_archive(archive: zipfile.ZipFile, filename: str, wheel_name: NormalizedName, wheel_version: Version) -> None:
    members = [info for info in archive.infolist() if not info.is_dir()]
    names = [info.filename for info in members]
    _check_member_names(filename, [info.filename for info in archive.infolist()])

    try:
        corrupt = archive.testzip()
    except (zlib.error, EOFError, NotImplementedError, ValueError) as exc:
        raise WheelRejected(f"{filename} is corrupt: {exc}") from None
    if corrupt is not None:
        raise WheelRejected(f"{filename} is corrupt: member {corrupt!r} fails its CRC check")

    dist_info = _dist_info_dir(filename, names, wheel_name, wheel_version)
    for required in ("WHEEL", "METADATA", "RECORD"):
        if f"{dist_info}/{required}" not in names:
            raise WheelRejected(f"{filename} has no {dist_info}/{required}")

    _check_wheel_file(filename, archive.read(f"{dist_info}/WHEEL"))
    _check_metadata(filename, archive.read(f"{dist_info}/METADATA"), wheel_name, wheel_version)
    record = _read_record(filename, archive.read(f"{dist_info}/RECORD"), dist_info)
    _check_record(archive, filename, dist_info, record, {info.filename: info for info in members})


def _check_member_names(filename: str, names: Iterable[str]) -> None:
    seen: set[str] = set()
    for member in names:
        if member in seen:
            raise WheelRejected(f"{filename} contains {member!r} twice")
        seen.add(member)
        if "\\" in member or "\x00" in member:
            raise WheelRejected(f"{filename} has a member with a forbidden character: {member!r}")
        pure = PurePosixPath(member)
        if pure.is_absolute() or (pure.parts and pure.parts[0].endswith(":")):
            raise WheelRejected(f"{filename} has a member with an absolute path: {member!r}")
        if ".." in pure.parts:
            raise WheelRejected(f"{filename} has a member that escapes the install directory: {member!r}")


def _dist_info_dir(filename: str, names: Iterable[str], wheel_name: NormalizedName, wheel_version: Version) -> str:
    tops = {name.split("/", 1)[0] for name in names if "/" in name}
    candidates = sorted(top for top in tops if top.endswith(".dist-info"))
    if not candidates:
        raise WheelRejected(f"{filename} has no .dist-info directory")
    if len(candidates) > 1:
        raise WheelRejected(f"{filename} has more than one .dist-info directory: {', '.join(candidates)}")
    dist_info = candidates[0]
    stem = dist_info[: -len(".dist-info")]
    dist_name, sep, dist_version = stem.rpartition("-")
    if not sep or canonicalize_name(dist_name) != wheel_name:
        raise WheelRejected(f"{filename}: {dist_info} does not match the project name {wheel_name!r}")
    try:
        matches = Version(dist_version) == wheel_version
    except InvalidVersion:
        matches = False
    if not matches:
        raise WheelRejected(f"{filename}: {dist_info} does not match the version {wheel_version}")
    return dist_info


def _check_wheel_file(filename: str, data: bytes) -> None:
    wheel_version = BytesHeaderParser().parsebytes(data).get("Wheel-Version")
    if wheel_version is None:
        raise WheelRejected(f"{filename}: the WHEEL file has no Wheel-Version")
    if wheel_version.strip().split(".", 1)[0] != "1":
        raise WheelRejected(f"{filename} has Wheel-Version {wheel_version.strip()}; only 1.x is supported")


def _check_metadata(filename: str, data: bytes, wheel_name: NormalizedName, wheel_version: Version) -> None:
    raw, _unparsed = parse_email(data)
    meta_name = raw.get("name")
    meta_version = raw.get("version")
    if not meta_name:
        raise WheelRejected(f"{filename}: METADATA has no Name")
    if not meta_version:
        raise WheelRejected(f"{filename}: METADATA has no Version")
    if canonicalize_name(meta_name) != wheel_name:
        raise WheelRejected(f"{filename}: METADATA names {meta_name!r}, the filename {wheel_name!r}")
    if _parse_version(meta_version, f"{filename}: METADATA Version") != wheel_version:
        raise WheelRejected(f"{filename}: METADATA says version {meta_version}, the filename {wheel_version}")


@dataclass(frozen=True)
class _RecordEntry:
    algorithm: str | None
    digest: str | None
    size: int | None


def _read_record(filename: str, data: bytes, dist_info: str) -> dict[str, _RecordEntry]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise WheelRejected(f"{filename}: {dist_info}/RECORD is not UTF-8") from None
    entries: dict[str, _RecordEntry] = {}
    for lineno, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row:
            continue
        if len(row) != 3:
            raise WheelRejected(f"{filename}: RECORD line {lineno} has {len(row)} fields, not 3")
        path, hash_field, size_field = row
        algorithm = digest = None
        if hash_field:
            algorithm, sep, digest = hash_field.partition("=")
            if not sep or not digest:
                raise WheelRejected(f"{filename}: RECORD line {lineno} has a malformed hash {hash_field!r}")
            if algorithm not in _RECORD_ALGORITHMS:
                raise WheelRejected(
                    f"{filename}: RECORD uses {algorithm!r} for {path}; the wheel spec needs sha256 or stronger"
                )
        size: int | None = None
        if size_field:
            try:
                size = int(size_field)
            except ValueError:
                raise WheelRejected(f"{filename}: RECORD line {lineno} has a bad size {size_field!r}") from None
        if path in entries:
            raise WheelRejected(f"{filename}: RECORD lists {path} twice")
        entries[path] = _RecordEntry(algorithm, digest, size)
    return entries


def _check_record(
    archive: zipfile.ZipFile,
    filename: str,
    dist_info: str,
    record: dict[str, _RecordEntry],
    members: dict[str, zipfile.ZipInfo],
) -> None:
    exempt = {f"{dist_info}/{name}" for name in _UNHASHED}
    for member in members:
        if member not in record and member not in exempt:
            raise WheelRejected(f"{filename}: {member} is in the wheel but not in RECORD")
    for path, entry in record.items():
        if path not in members:
            raise WheelRejected(f"{filename}: RECORD lists {path}, which is not in the wheel")
        if path in exempt:
            continue
        if entry.algorithm is None or entry.digest is None:
            raise WheelRejected(f"{filename}: RECORD has no hash for {path}")
        digest, size = _member_digest(archive, path, entry.algorithm)
        if digest != entry.digest:
            raise WheelRejected(f"{filename}: the {entry.algorithm} of {path} does not match RECORD")
        if entry.size is not None and entry.size != size:
            raise WheelRejected(f"{filename}: {path} is {size} bytes, RECORD says {entry.size}")


def _member_digest(archive: zipfile.ZipFile, member: str, algorithm: str) -> tuple[str, int]:
    hasher = hashlib.new(algorithm)
    size = 0
    with archive.open(member) as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            hasher.update(chunk)
            size += len(chunk)
    return base64.urlsafe_b64encode(hasher.digest()).rstrip(b"=").decode("ascii"), size
