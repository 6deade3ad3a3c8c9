"""Ensure's inputs and targets: requirements files (includes, hashes, markers, extras), pyproject.toml
(optional dependencies, PEP 735 groups), locks, build identifier patterns, and bad input refused
with a message that says what to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.errors import InvalidEnsureInput, InvalidTarget
from builder.targets import BuildTarget
from server.ensure.inputs import (
    Pin,
    from_pylock,
    from_pyproject,
    from_requirements_file,
    from_requirements_text,
    from_uv_lock,
)
from server.ensure.resolve import parse_compiled
from server.ensure.targets import expand_targets, marker_environment, uv_platform

CP312 = BuildTarget.parse("cp312-manylinux_x86_64")
CP313 = BuildTarget.parse("cp313-manylinux_x86_64")


def test_requirements_file_with_includes_constraints_hashes_markers_and_extras(tmp_path: Path) -> None:
    (tmp_path / "base.txt").write_text("idna==3.10 \\\n    --hash=sha256:aa --hash=sha256:bb\n")
    (tmp_path / "constraints.txt").write_text("# pins for everything\nurllib3<3\n")
    (tmp_path / "requirements.txt").write_text(
        "--index-url https://example.invalid/simple/\n"
        "-r base.txt\n"
        "-c constraints.txt\n"
        "requests[socks]>=2.31  # the client\n"
        "exceptiongroup==1.2.2; python_version < '3.11'\n"
        'tomli>=2 ; python_version < "3.11"\n'
    )
    sources = from_requirements_file(tmp_path / "requirements.txt")
    assert sources.requirements == (
        "idna==3.10",
        "requests[socks]>=2.31",
        'exceptiongroup==1.2.2; python_version < "3.11"',
        'tomli>=2; python_version < "3.11"',
    )
    assert sources.constraints == ("urllib3<3",)
    assert sources.hashes == {"idna": frozenset({"aa", "bb"})}


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("-e ./src/project\n", "editable install"),
        ("foo @ https://example.org/foo.whl\n", "points at a URL"),
        ("foo==>1\n", "is not a requirement"),
        ("--no-such-option\n", "unknown option --no-such-option"),
        ("-r other.txt\n", "the API cannot read"),
    ],
)
def test_bad_requirement_lines_are_refused_with_their_place(text: str, says: str) -> None:
    with pytest.raises(InvalidEnsureInput) as caught:
        from_requirements_text(text)
    assert says in caught.value.message
    assert caught.value.hint


def test_an_include_loop_and_a_missing_include_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("-r b.txt\n")
    (tmp_path / "b.txt").write_text("-r a.txt\n")
    with pytest.raises(InvalidEnsureInput, match="includes itself"):
        from_requirements_file(tmp_path / "a.txt")
    (tmp_path / "c.txt").write_text("-r missing.txt\n")
    with pytest.raises(InvalidEnsureInput, match="cannot read .*missing.txt"):
        from_requirements_file(tmp_path / "c.txt")


PYPROJECT = """
[project]
name = "app"
version = "1"
dependencies = ["httpx>=0.27", "numpy==2.2.6; python_version >= '3.12'"]

[project.optional-dependencies]
Fast = ["orjson"]

[dependency-groups]
test = ["pytest>=8", {include-group = "lint"}]
lint = ["ruff"]
"""


def test_pyproject_dependencies_extras_and_included_groups() -> None:
    sources = from_pyproject(PYPROJECT, extras=["fast"], groups=["test"])
    assert sources.requirements == (
        "httpx>=0.27",
        'numpy==2.2.6; python_version >= "3.12"',
        "orjson",
        "pytest>=8",
        "ruff",
    )
    with pytest.raises(InvalidEnsureInput, match="no dependency group 'docs'"):
        from_pyproject(PYPROJECT, groups=["docs"])
    with pytest.raises(InvalidEnsureInput, match="no optional dependencies named 'slow'"):
        from_pyproject(PYPROJECT, extras=["slow"])
    with pytest.raises(InvalidEnsureInput, match="not valid TOML"):
        from_pyproject("[project\n")


PYLOCK = """
lock-version = "1.0"
created-by = "test"
default-groups = ["default"]

[[packages]]
name = "app"
directory = { path = ".", editable = true }

[[packages]]
name = "Idna"
version = "3.10"

[[packages]]
name = "tomli"
version = "2.2.1"
marker = "python_full_version < '3.13'"

[[packages]]
name = "pytest"
version = "8.3.4"
marker = "'dev' in dependency_groups"
"""


def test_pylock_closure_follows_markers_and_groups_per_target() -> None:
    (lock,) = from_pylock(PYLOCK).locks
    assert lock.closure(marker_environment(CP312)) == [Pin("idna", "3.10"), Pin("tomli", "2.2.1")]
    assert lock.closure(marker_environment(CP313)) == [Pin("idna", "3.10")]
    (dev,) = from_pylock(PYLOCK, groups=["dev"]).locks
    assert Pin("pytest", "8.3.4") in dev.closure(marker_environment(CP313))


UV_LOCK = """
version = 1
requires-python = ">=3.12"

[[package]]
name = "app"
version = "0.1.0"
source = { virtual = "." }
dependencies = [
    { name = "anyio" },
    { name = "tomli", marker = "python_full_version < '3.13'" },
]

[package.optional-dependencies]
socks = [{ name = "socksio" }]

[package.dev-dependencies]
dev = [{ name = "pytest" }]

[[package]]
name = "anyio"
version = "4.8.0"
source = { registry = "https://pypi.org/simple" }
dependencies = [{ name = "idna" }, { name = "typing-extensions", marker = "python_full_version < '3.13'" }]

[[package]]
name = "idna"
version = "3.10"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "typing-extensions"
version = "4.12.2"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "tomli"
version = "2.2.1"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "socksio"
version = "1.0.0"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "pytest"
version = "8.3.4"
source = { registry = "https://pypi.org/simple" }
"""


def test_uv_lock_closure_is_the_graph_reached_on_each_target() -> None:
    (lock,) = from_uv_lock(UV_LOCK).locks
    on312 = sorted(p.name for p in lock.closure(marker_environment(CP312)))
    on313 = sorted(p.name for p in lock.closure(marker_environment(CP313)))
    assert on312 == ["anyio", "idna", "pytest", "tomli", "typing-extensions"]
    assert on313 == ["anyio", "idna", "pytest"]
    (bare,) = from_uv_lock(UV_LOCK, extras=["socks"], groups=[]).locks
    assert sorted(p.name for p in bare.closure(marker_environment(CP313))) == ["anyio", "idna", "socksio"]
    with pytest.raises(InvalidEnsureInput, match="not a uv.lock"):
        from_uv_lock(PYLOCK)


def test_targets_expand_cibuildwheel_patterns_and_refuse_what_names_no_interpreter() -> None:
    assert [t.identifier for t in expand_targets(["cp31{2,3}-manylinux_x86_64"])] == [
        "cp312-manylinux_x86_64",
        "cp313-manylinux_x86_64",
    ]
    assert [t.identifier for t in expand_targets(["cp313-*linux_x86_64", "cp313-manylinux_x86_64"])] == [
        "cp313-manylinux_x86_64",
        "cp313-musllinux_x86_64",
    ]
    with pytest.raises(InvalidTarget, match="matches no build identifier"):
        expand_targets(["pp3*-manylinux_x86_64"])
    with pytest.raises(InvalidTarget, match="names no interpreter"):
        expand_targets(["py3-none-any"])
    assert uv_platform(CP312, (2, 28)) == "x86_64-manylinux_2_28"
    assert marker_environment(BuildTarget.parse("cp311-win_amd64"))["sys_platform"] == "win32"


def test_uv_output_is_read_as_pins_and_a_private_override_by_its_wheel() -> None:
    text = "anyio==4.8.0\nIdna==3.10\ninternal-lib @ http://127.0.0.1:1/packages/internal_lib-2.0-py3-none-any.whl\n"
    pins = parse_compiled(text, {"internal-lib": "http://127.0.0.1:1/packages/internal_lib-2.0-py3-none-any.whl"})
    assert pins == [Pin("anyio", "4.8.0"), Pin("idna", "3.10"), Pin("internal-lib", "2.0")]
