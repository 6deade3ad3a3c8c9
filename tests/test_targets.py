"""Build identifiers: cibuildwheel's own examples parse; anything else is refused with a hint."""

from __future__ import annotations

import pytest

from builder.errors import InvalidTarget
from builder.targets import PURE, BuildTarget


@pytest.mark.parametrize(
    ("identifier", "python", "platform"),
    [
        ("cp312-manylinux_x86_64", (3, 12), "manylinux_x86_64"),
        ("cp311-musllinux_x86_64", (3, 11), "musllinux_x86_64"),
        ("cp313-win_amd64", (3, 13), "win_amd64"),
        ("cp310-macosx_arm64", (3, 10), "macosx_arm64"),
        (" cp39-manylinux_aarch64 ", (3, 9), "manylinux_aarch64"),
        (PURE, None, "any"),
    ],
)
def test_cibuildwheel_identifiers_parse(identifier: str, python: tuple[int, int] | None, platform: str) -> None:
    target = BuildTarget.parse(identifier)
    assert (target.python, target.platform) == (python, platform)
    assert BuildTarget.parse(target.identifier) == target


@pytest.mark.parametrize(
    ("identifier", "says"),
    [
        ("cp3\u0661\u0662-manylinux_x86_64", "is not a build identifier"),  # Arabic-Indic digits
        ("cp3\uff11\uff12-manylinux_x86_64", "is not a build identifier"),  # full-width digits
        ("cp312-manylinux_x86_64-extra", "is not a build identifier"),
        ("cp312-MANYLINUX_X86_64", "is not a build identifier"),
        ("pp310-manylinux_x86_64", "is not a build identifier"),
        ("cp312-solaris_sparc", "unknown platform"),
        ("cp37-manylinux_x86_64", "does not build for"),
    ],
)
def test_other_identifiers_are_refused_with_a_hint(identifier: str, says: str) -> None:
    with pytest.raises(InvalidTarget) as info:
        BuildTarget.parse(identifier)
    assert says in info.value.message
    assert info.value.hint
