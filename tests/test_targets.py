"""Build identifiers and patterns: cibuildwheel's own list parses; anything else is refused with a hint."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from builder.errors import InvalidTarget
from builder.targets import PURE, BuildTarget, parse_targets, split_target_list


@pytest.mark.parametrize(
    ("identifier", "python", "platform", "free_threaded"),
    [
        ("cp312-manylinux_x86_64", (3, 12), "manylinux_x86_64", False),
        ("cp311-musllinux_x86_64", (3, 11), "musllinux_x86_64", False),
        ("cp313-win_amd64", (3, 13), "win_amd64", False),
        ("cp310-macosx_arm64", (3, 10), "macosx_arm64", False),
        (" cp39-manylinux_aarch64 ", (3, 9), "manylinux_aarch64", False),
        ("cp314t-manylinux_x86_64", (3, 14), "manylinux_x86_64", True),
        ("cp315-manylinux_x86_64", (3, 15), "manylinux_x86_64", False),
        ("cp312-manylinux_i686", (3, 12), "manylinux_i686", False),
        ("cp313-musllinux_aarch64", (3, 13), "musllinux_aarch64", False),
        (PURE, None, "any", False),
    ],
)
def test_cibuildwheel_identifiers_parse(
    identifier: str, python: tuple[int, int] | None, platform: str, free_threaded: bool
) -> None:
    target = BuildTarget.parse(identifier)
    assert (target.python, target.platform, target.free_threaded) == (python, platform, free_threaded)
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
        ("cp312-ios_arm64_iphoneos", "unknown platform"),
        ("cp38-manylinux_x86_64", "does not build for"),  # cibuildwheel no longer lists 3.8
        ("cp37-manylinux_x86_64", "does not build for"),
    ],
)
def test_other_identifiers_are_refused_with_a_hint(identifier: str, says: str) -> None:
    with pytest.raises(InvalidTarget) as info:
        BuildTarget.parse(identifier)
    assert says in info.value.message
    assert info.value.hint


def test_every_cpython_identifier_the_real_cibuildwheel_prints_parses(tmp_path: Path) -> None:
    """The list is cibuildwheel's: what its own CLI prints for Linux, macOS and Windows parses back."""
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "1"\n')
    cibuildwheel = str(Path(sys.executable).parent / "cibuildwheel")
    printed: list[str] = []
    for platform in ("linux", "macos", "windows"):
        result = subprocess.run(
            [cibuildwheel, "--print-build-identifiers", "--platform", platform, "--archs", "all"],
            cwd=tmp_path,
            env={**os.environ, "CIBW_ENABLE": "all"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        printed += [line for line in result.stdout.split() if line.startswith("cp")]
    assert "cp314t-manylinux_x86_64" in printed and "cp313-musllinux_aarch64" in printed
    for identifier in printed:
        assert BuildTarget.parse(identifier).identifier == identifier


def test_wheel_tags_follow_the_interpreter_named_not_the_one_running() -> None:
    free = BuildTarget.parse("cp314t-manylinux_x86_64")
    tags = {str(t) for t in free.compatible_tags()}
    assert "cp314-cp314t-manylinux_2_17_x86_64" in tags and "cp314-cp314-manylinux_2_17_x86_64" not in tags
    assert "cp314-abi3-manylinux_2_17_x86_64" not in tags  # abi3 does not load on a free-threaded CPython
    gil = BuildTarget.parse("cp313-manylinux_x86_64")
    assert "cp39-abi3-manylinux2014_x86_64" in {str(t) for t in gil.compatible_tags()}
    assert "manylinux2014_i686" in BuildTarget.parse("cp312-manylinux_i686").platform_tags()
    assert "win_arm64" in BuildTarget.parse("cp313-win_arm64").platform_tags()


@pytest.mark.parametrize(
    ("patterns", "expected"),
    [
        (["cp31{2,3}-manylinux_x86_64"], ["cp312-manylinux_x86_64", "cp313-manylinux_x86_64"]),
        (["cp313-*linux_x86_64"], ["cp313-manylinux_x86_64", "cp313-musllinux_x86_64"]),
        (["cp312-manylinux_x86_64", "cp31[23]-manylinux_x86_64"], ["cp312-manylinux_x86_64", "cp313-manylinux_x86_64"]),
    ],
)
def test_cibuildwheel_selector_patterns_expand(patterns: list[str], expected: list[str]) -> None:
    assert [t.identifier for t in parse_targets(patterns)] == expected


@pytest.mark.parametrize(
    ("pattern", "says"),
    [("cp312-foo_*", "matches no build identifier"), ("*", "more than")],
)
def test_patterns_that_match_nothing_or_too_much_are_refused(pattern: str, says: str) -> None:
    with pytest.raises(InvalidTarget) as info:
        parse_targets([pattern])
    assert says in info.value.message
    assert info.value.hint


def test_a_comma_list_keeps_brace_patterns_whole() -> None:
    assert split_target_list("cp31{2,3}-manylinux_x86_64, py3-none-any") == [
        "cp31{2,3}-manylinux_x86_64",
        "py3-none-any",
    ]
