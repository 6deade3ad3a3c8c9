"""Unpacking a stranger's sdist (builder.sdist): every trick of a tar or a zip is refused before
anything is written, and what is unpacked stays inside the build's disk and file-count limits.

The archives are real ones, written with tarfile and zipfile as a hostile author would.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from builder.errors import UnsafeSdist
from builder.sdist import UnpackLimits, unpack_sdist

LIMITS = UnpackLimits(max_bytes=64 * 1024**2, max_files=1000)
PROJECT = "evil-1.0"
PYPROJECT = b'[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'


def add_file(tf: tarfile.TarFile, name: str, data: bytes = b"x") -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def make_tar(path: Path, extra: Callable[[tarfile.TarFile], None]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        add_file(tf, f"{PROJECT}/pyproject.toml", PYPROJECT)
        extra(tf)
    return path


def make_zip(path: Path, members: dict[str, tuple[bytes, int]]) -> Path:
    """members: name -> (data, unix mode incl. file type)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{PROJECT}/pyproject.toml", PYPROJECT)
        for name, (data, mode) in members.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            info.create_system = 3
            zf.writestr(info, data)
    return path


def refused(archive: Path, dest: Path, limits: UnpackLimits = LIMITS) -> str:
    with pytest.raises(UnsafeSdist) as info:
        unpack_sdist(archive, dest, limits)
    err = info.value
    assert err.reference == "unsafe-sdist" and err.hint
    return err.message


def special(kind: bytes, name: str, linkname: str = "") -> Callable[[tarfile.TarFile], None]:
    def add(tf: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = linkname
        tf.addfile(info)

    return add


@pytest.mark.parametrize(
    ("trick", "extra", "says"),
    [
        ("dotdot", lambda tf: add_file(tf, f"{PROJECT}/../../escaped.txt"), "'..'"),
        ("absolute", lambda tf: add_file(tf, "/tmp/wheelyard-escaped.txt"), "absolute"),
        ("symlink", special(tarfile.SYMTYPE, f"{PROJECT}/link", "/etc/shadow"), "symbolic link"),
        ("hardlink", special(tarfile.LNKTYPE, f"{PROJECT}/hard", "/etc/shadow"), "hard link"),
        ("device", special(tarfile.CHRTYPE, f"{PROJECT}/null"), "device"),
        ("fifo", special(tarfile.FIFOTYPE, f"{PROJECT}/pipe"), "FIFO"),
    ],
)
def test_tar_tricks_are_refused_before_anything_is_written(
    tmp_path: Path, trick: str, extra: Callable[[tarfile.TarFile], None], says: str
) -> None:
    archive = make_tar(tmp_path / f"{trick}.tar.gz", extra)
    dest = tmp_path / "src"
    assert says in refused(archive, dest)
    assert list(dest.rglob("*")) == []  # not even the harmless pyproject.toml before it
    assert not (tmp_path / "escaped.txt").exists()


def test_a_3_gib_member_is_refused_from_its_header_without_inflating_it(tmp_path: Path) -> None:
    first = tarfile.TarInfo(f"{PROJECT}/pyproject.toml")
    first.size = len(PYPROJECT)
    big = tarfile.TarInfo(f"{PROJECT}/zeros.bin")
    big.size = 3 * 1024**3
    archive = tmp_path / "bomb.tar"
    # A truncated archive, written by hand: only the big member's header is there to be read.
    padding = bytes(-len(PYPROJECT) % 512)
    archive.write_bytes(first.tobuf() + PYPROJECT + padding + big.tobuf() + bytes(1024))
    assert "more than 67108864 bytes (the build's disk limit)" in refused(archive, tmp_path / "src")
    assert list((tmp_path / "src").rglob("*")) == []


def test_too_many_members_are_refused(tmp_path: Path) -> None:
    def many(tf: tarfile.TarFile) -> None:
        for i in range(20):
            add_file(tf, f"{PROJECT}/f{i}")

    archive = make_tar(tmp_path / "many.tar.gz", many)
    message = refused(archive, tmp_path / "src", UnpackLimits(max_bytes=1024**2, max_files=10))
    assert "more than 10 members" in message


@pytest.mark.parametrize(
    ("trick", "name", "mode", "says"),
    [
        ("dotdot", "../escaped.txt", 0o100644, "'..'"),
        ("absolute", "/tmp/wheelyard-escaped.txt", 0o100644, "absolute"),
        ("backslash", "..\\escaped.txt", 0o100644, "'..'"),
        ("symlink", f"{PROJECT}/link", 0o120777, "link or special"),
    ],
)
def test_zip_tricks_are_refused(tmp_path: Path, trick: str, name: str, mode: int, says: str) -> None:
    archive = make_zip(tmp_path / f"{trick}.zip", {name: (b"/etc/shadow", mode)})
    assert says in refused(archive, tmp_path / "src")
    assert list((tmp_path / "src").rglob("*")) == []


def test_a_zip_bomb_is_refused_from_its_central_directory(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{PROJECT}/pyproject.toml", PYPROJECT)
        with zf.open(f"{PROJECT}/zeros.bin", "w", force_zip64=True) as out:
            for _ in range(128):
                out.write(bytes(1024**2))
    assert archive.stat().st_size < 1024**2
    assert "the build's disk limit" in refused(archive, tmp_path / "src")
    assert list((tmp_path / "src").rglob("*")) == []


def test_an_ordinary_sdist_unpacks_with_its_modes(tmp_path: Path) -> None:
    def files(tf: tarfile.TarFile) -> None:
        add_file(tf, f"{PROJECT}/pkg/__init__.py", b"VALUE = 1\n")
        info = tarfile.TarInfo(f"{PROJECT}/configure")
        info.size, info.mode = 3, 0o755
        tf.addfile(info, io.BytesIO(b"#!\n"))

    project = unpack_sdist(make_tar(tmp_path / "ok.tar.gz", files), tmp_path / "src", LIMITS)
    assert project == tmp_path / "src" / PROJECT
    assert (project / "pkg" / "__init__.py").read_text() == "VALUE = 1\n"
    assert (project / "configure").stat().st_mode & 0o111
    zipped = make_zip(tmp_path / "ok.zip", {f"{PROJECT}/pkg/__init__.py": (b"VALUE = 2\n", 0o100644)})
    assert (unpack_sdist(zipped, tmp_path / "zsrc", LIMITS) / "pkg" / "__init__.py").read_text() == "VALUE = 2\n"


def test_a_member_over_a_file_is_a_clear_error(tmp_path: Path) -> None:
    def clash(tf: tarfile.TarFile) -> None:
        add_file(tf, f"{PROJECT}/a")
        add_file(tf, f"{PROJECT}/a/b")

    assert "cannot be unpacked" in refused(make_tar(tmp_path / "clash.tar.gz", clash), tmp_path / "src")
