"""verify_wheel on real wheel files, one fixture per failure mode.

``make_wheel`` writes a small, real, installable wheel by hand (zip + dist-info + RECORD);
its options produce the broken variants. The index and publish tests use it too.
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from packaging.tags import Tag

from builder.errors import WheelRejected
from builder.targets import BuildTarget
from builder.verify import WheelInfo, sha256_file, verify_wheel

RecordEdit = Callable[[list[list[str]]], None]


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()


def make_wheel(
    directory: Path,
    name: str = "tinypkg",
    version: str = "1.0",
    tag: str = "py3-none-any",
    *,
    payload: bytes = b"",
    filename: str | None = None,
    metadata_name: str | None = None,
    metadata_version: str | None = None,
    omit: tuple[str, ...] = (),
    unlisted: dict[str, bytes] | None = None,
    extra: dict[str, bytes] | None = None,
    record_edit: RecordEdit | None = None,
) -> Path:
    """Write ``NAME-VERSION-TAG.whl`` into ``directory`` and return its path.

    ``payload`` goes into a data file (to make the wheel bigger or different);
    ``omit`` drops dist-info files by basename; ``extra`` adds members that RECORD lists,
    ``unlisted`` members it does not; ``record_edit`` rewrites RECORD's rows.
    """
    module = name.replace("-", "_").lower()
    dist_info = f"{module}-{version}.dist-info"
    members: dict[str, bytes] = {
        f"{module}/__init__.py": f"VALUE = {version!r}\n".encode(),
        f"{module}/payload.bin": payload,
        f"{dist_info}/METADATA": (
            "Metadata-Version: 2.1\n"
            f"Name: {metadata_name or name}\n"
            f"Version: {metadata_version or version}\n"
            "Summary: a tiny test package\n"
        ).encode(),
        f"{dist_info}/WHEEL": (
            f"Wheel-Version: 1.0\nGenerator: wheelyard-tests\nRoot-Is-Purelib: true\nTag: {tag}\n"
        ).encode(),
    }
    members.update(extra or {})
    for basename in omit:
        members.pop(f"{dist_info}/{basename}", None)
    rows = [[path, _record_hash(data), str(len(data))] for path, data in members.items()]
    rows.append([f"{dist_info}/RECORD", "", ""])
    if record_edit is not None:
        record_edit(rows)
    if "RECORD" not in omit:
        members[f"{dist_info}/RECORD"] = "".join(",".join(row) + "\n" for row in rows).encode()
    members.update(unlisted or {})
    path = directory / (filename or f"{module}-{version}-{tag}.whl")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for arcname, data in members.items():
            archive.writestr(arcname, data)
    return path


def _edit_hash(member: str) -> RecordEdit:
    def edit(rows: list[list[str]]) -> None:
        for row in rows:
            if row[0].endswith(member):
                row[1] = _record_hash(b"something else")

    return edit


def rejected(path: Path, **kwargs: object) -> str:
    with pytest.raises(WheelRejected) as info:
        verify_wheel(path, **kwargs)  # type: ignore[arg-type]
    return info.value.message


# --- the good case ---------------------------------------------------------------------


def test_a_good_wheel_passes_and_is_described(tmp_path: Path) -> None:
    path = make_wheel(tmp_path, "Tiny_Pkg", "1.0.0", payload=b"x" * 1000)
    info = verify_wheel(path, name="tiny.pkg", version="1.0", target=BuildTarget.parse("py3-none-any"))
    assert info == WheelInfo(
        filename="tiny_pkg-1.0.0-py3-none-any.whl",
        name="tiny-pkg",  # type: ignore[arg-type]
        version="1.0.0",
        tags=frozenset({Tag("py3", "none", "any")}),
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        size=path.stat().st_size,
    )


def test_sha256_file_streams_a_large_file(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    data = bytes(range(256)) * 20_000  # ~5 MB, several chunks
    big.write_bytes(data)
    assert sha256_file(big) == hashlib.sha256(data).hexdigest()


def test_any_manylinux_glibc_is_accepted_for_a_linux_target(tmp_path: Path) -> None:
    path = make_wheel(tmp_path, tag="cp312-cp312-manylinux_2_34_x86_64")
    info = verify_wheel(path, target=BuildTarget.parse("cp312-manylinux_x86_64"))
    assert Tag("cp312", "cp312", "manylinux_2_34_x86_64") in info.tags


def test_signature_files_need_not_be_in_record(tmp_path: Path) -> None:
    path = make_wheel(tmp_path, unlisted={"tinypkg-1.0.dist-info/RECORD.jws": b"{}"})
    verify_wheel(path)


# --- one fixture per failure mode ------------------------------------------------------


@pytest.fixture
def wheel_with_a_wrong_platform_tag(tmp_path: Path) -> Path:
    return make_wheel(tmp_path, tag="cp312-cp312-linux_x86_64")


def test_wrong_target_tag_is_refused(wheel_with_a_wrong_platform_tag: Path) -> None:
    message = rejected(wheel_with_a_wrong_platform_tag, target=BuildTarget.parse("cp312-manylinux_x86_64"))
    assert "does not install on cp312-manylinux_x86_64" in message
    assert "cp312-cp312-linux_x86_64" in message


@pytest.fixture
def wheel_for_another_python(tmp_path: Path) -> Path:
    return make_wheel(tmp_path, tag="cp311-cp311-manylinux_2_28_x86_64")


def test_wheel_for_another_python_is_refused(wheel_for_another_python: Path) -> None:
    assert "does not install on" in rejected(
        wheel_for_another_python, target=BuildTarget.parse("cp312-manylinux_x86_64")
    )


@pytest.fixture
def wheel_with_a_bad_filename(tmp_path: Path) -> Path:
    return make_wheel(tmp_path, filename="tinypkg-1.0.whl")


def test_bad_filename_is_refused(wheel_with_a_bad_filename: Path) -> None:
    assert "not a valid wheel filename" in rejected(wheel_with_a_bad_filename)


@pytest.fixture
def file_that_is_not_a_zip(tmp_path: Path) -> Path:
    path = tmp_path / "tinypkg-1.0-py3-none-any.whl"
    path.write_bytes(b"this is not a zip file at all")
    return path


def test_not_a_zip_is_refused(file_that_is_not_a_zip: Path) -> None:
    assert "not a valid zip file" in rejected(file_that_is_not_a_zip)


@pytest.fixture
def wheel_with_a_corrupt_member(tmp_path: Path) -> Path:
    path = make_wheel(tmp_path, payload=b"A" * 5000)
    data = bytearray(path.read_bytes())
    # Stored compressed: flip a byte inside the payload's compressed data.
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("tinypkg/payload.bin")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def test_corrupt_member_is_refused(wheel_with_a_corrupt_member: Path) -> None:
    message = rejected(wheel_with_a_corrupt_member)
    assert "tinypkg-1.0-py3-none-any.whl is corrupt" in message


@pytest.mark.parametrize("missing", ["WHEEL", "METADATA", "RECORD"])
def test_missing_dist_info_file_is_refused(tmp_path: Path, missing: str) -> None:
    path = make_wheel(tmp_path, omit=(missing,))
    assert f"has no tinypkg-1.0.dist-info/{missing}" in rejected(path)


@pytest.fixture
def wheel_whose_metadata_names_another_project(tmp_path: Path) -> Path:
    return make_wheel(tmp_path, metadata_name="otherpkg")


def test_metadata_name_mismatch_is_refused(
    wheel_whose_metadata_names_another_project: Path,
) -> None:
    assert "METADATA names 'otherpkg'" in rejected(wheel_whose_metadata_names_another_project)


@pytest.fixture
def wheel_whose_metadata_has_another_version(tmp_path: Path) -> Path:
    return make_wheel(tmp_path, metadata_version="2.0")


def test_metadata_version_mismatch_is_refused(
    wheel_whose_metadata_has_another_version: Path,
) -> None:
    assert "METADATA says version 2.0" in rejected(wheel_whose_metadata_has_another_version)


@pytest.fixture
def wheel_with_a_bad_record_hash(tmp_path: Path) -> Path:
    return make_wheel(tmp_path, record_edit=_edit_hash("__init__.py"))


def test_bad_record_hash_is_refused(wheel_with_a_bad_record_hash: Path) -> None:
    assert "sha256 of tinypkg/__init__.py does not match RECORD" in rejected(wheel_with_a_bad_record_hash)


@pytest.fixture
def wheel_with_a_bad_record_size(tmp_path: Path) -> Path:
    def edit(rows: list[list[str]]) -> None:
        rows[0][2] = "999"

    return make_wheel(tmp_path, record_edit=edit)


def test_bad_record_size_is_refused(wheel_with_a_bad_record_size: Path) -> None:
    assert "RECORD says 999" in rejected(wheel_with_a_bad_record_size)


@pytest.fixture
def wheel_with_a_weak_record_hash(tmp_path: Path) -> Path:
    def edit(rows: list[list[str]]) -> None:
        rows[0][1] = "md5=" + base64.urlsafe_b64encode(b"0" * 16).decode().rstrip("=")

    return make_wheel(tmp_path, record_edit=edit)


def test_weak_record_hash_is_refused(wheel_with_a_weak_record_hash: Path) -> None:
    assert "sha256 or stronger" in rejected(wheel_with_a_weak_record_hash)


@pytest.fixture
def wheel_with_a_file_missing_from_record(tmp_path: Path) -> Path:
    return make_wheel(tmp_path, unlisted={"tinypkg/sneaky.py": b"print('hi')\n"})


def test_file_missing_from_record_is_refused(wheel_with_a_file_missing_from_record: Path) -> None:
    assert "tinypkg/sneaky.py is in the wheel but not in RECORD" in rejected(wheel_with_a_file_missing_from_record)


@pytest.fixture
def wheel_whose_record_lists_a_missing_file(tmp_path: Path) -> Path:
    def edit(rows: list[list[str]]) -> None:
        rows.append(["tinypkg/ghost.py", _record_hash(b""), "0"])

    return make_wheel(tmp_path, record_edit=edit)


def test_record_entry_without_file_is_refused(
    wheel_whose_record_lists_a_missing_file: Path,
) -> None:
    assert "RECORD lists tinypkg/ghost.py, which is not in the wheel" in rejected(
        wheel_whose_record_lists_a_missing_file
    )


@pytest.fixture
def wheel_with_a_parent_directory_member(tmp_path: Path) -> Path:
    return make_wheel(tmp_path, extra={"../../etc/evil.py": b"x"})


def test_parent_directory_member_is_refused(wheel_with_a_parent_directory_member: Path) -> None:
    assert "escapes the install directory: '../../etc/evil.py'" in rejected(wheel_with_a_parent_directory_member)


@pytest.fixture
def wheel_with_an_absolute_member(tmp_path: Path) -> Path:
    return make_wheel(tmp_path, extra={"/etc/evil.py": b"x"})


def test_absolute_member_is_refused(wheel_with_an_absolute_member: Path) -> None:
    assert "absolute path: '/etc/evil.py'" in rejected(wheel_with_an_absolute_member)


def test_request_name_mismatch_is_refused(tmp_path: Path) -> None:
    path = make_wheel(tmp_path)
    assert "but 'otherpkg' was requested" in rejected(path, name="otherpkg")


def test_request_version_mismatch_is_refused(tmp_path: Path) -> None:
    path = make_wheel(tmp_path)
    assert "is version 1.0, but 1.1 was requested" in rejected(path, version="1.1")
    assert verify_wheel(path, name="TinyPkg", version="1.0.0").version == "1.0"
