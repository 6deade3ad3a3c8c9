"""macOS and Windows targets build through the real cibuildwheel, on the worker's own terms.

What cannot run here: no macOS or Windows host exists on this machine, and cibuildwheel's
Linux mode needs a container engine, which this machine cannot start. So these tests run the
real cibuildwheel as far as a Linux host without a container engine takes it: it reads the
worker's configuration and the sdist, selects the one identifier, and refuses to start a
container; the handling of the wheels it writes is tested on wheels laid in its output directory.
"""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

import pytest
from cibuildwheel.environment import parse_environment
from cibuildwheel.options import EnvironmentFormat, OptionsReader

from builder.cibuildwheel_build import CibuildwheelBuild, uses_cibuildwheel, write_config
from builder.errors import CibuildwheelFailed
from builder.targets import BuildTarget
from tests.conftest import make_sdist

HOSTILE_PYPROJECT = """
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "hostile"
version = "1.0"

[tool.cibuildwheel]
before-all = "touch {marker}"
test-command = "touch {marker}"
build = "cp39-*"
"""


def _build(tmp_path: Path, identifier: str, *, marker: Path | None = None) -> CibuildwheelBuild:
    pyproject = HOSTILE_PYPROJECT.format(marker=marker or tmp_path / "pwned")
    sdist = make_sdist(tmp_path / "project", "hostile", "1.0", {"pyproject.toml": pyproject}, tmp_path / "dist")
    config = write_config(tmp_path / "cibuildwheel.toml", {"MAKEFLAGS": "-j2", "CMAKE_BUILD_PARALLEL_LEVEL": "2"})
    return CibuildwheelBuild(BuildTarget.parse(identifier), sdist, tmp_path / "out", config)


def _run(build: CibuildwheelBuild, *extra: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = build.environment({"PATH": "/usr/bin:/bin", "CIBW_BEFORE_ALL": "touch /tmp/x", "UPLOAD_PASSWORD": "s"})
    command = build.command()
    return subprocess.run(
        [*command[:-1], *extra, command[-1]], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_only_macos_and_windows_targets_go_through_cibuildwheel() -> None:
    assert uses_cibuildwheel(BuildTarget.parse("cp313-macosx_arm64"))
    assert uses_cibuildwheel(BuildTarget.parse("cp313-win_amd64"))
    assert not uses_cibuildwheel(BuildTarget.parse("cp313-manylinux_x86_64"))
    assert not uses_cibuildwheel(BuildTarget.parse("py3-none-any"))


def test_the_real_cibuildwheel_accepts_the_command_and_selects_one_identifier(tmp_path: Path) -> None:
    """The sdist asks for cp39 only; --only and the worker's configuration decide."""
    build = _build(tmp_path, "cp312-manylinux_x86_64")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    result = _run(build, "--print-build-identifiers", cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == ["cp312-manylinux_x86_64"]


def test_the_worker_configuration_replaces_the_sdists_commands(tmp_path: Path) -> None:
    build = _build(tmp_path, "cp312-manylinux_x86_64")
    reader = OptionsReader(build.config_file, platform="macos", env={})
    assert reader.get("before-all") == "" and reader.get("test-command") == ""
    assert reader.get("build-frontend") == "build"
    environment = parse_environment(reader.get("environment", option_format=EnvironmentFormat()))
    assert environment.as_dictionary(prev_environment={}) == {"MAKEFLAGS": "-j2", "CMAKE_BUILD_PARALLEL_LEVEL": "2"}
    env = build.environment({"PATH": "/bin", "CIBW_BEFORE_ALL": "x", "WHEELYARD_INDEX_PASSWORD": "s", "HOME": "/h"})
    assert "CIBW_BEFORE_ALL" not in env and "WHEELYARD_INDEX_PASSWORD" not in env
    assert env["HOME"] == "/h"


def test_without_a_container_engine_the_real_run_fails_and_runs_nothing_of_the_sdist(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    build = _build(tmp_path, "cp312-manylinux_x86_64", marker=marker)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    result = _run(build, cwd=cwd)
    assert result.returncode != 0
    assert "docker" in (result.stdout + result.stderr).lower()
    assert not marker.exists()
    with pytest.raises(CibuildwheelFailed) as info:
        build.built_wheel()
    assert info.value.reference == "cibuildwheel-failed" and "0 wheels" in info.value.message


def _lay_wheel(out: Path, filename: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out / filename, "w") as zf:
        zf.writestr("hostile/__init__.py", "")
    return out / filename


@pytest.mark.parametrize(
    ("identifier", "filename"),
    [
        ("cp312-macosx_arm64", "hostile-1.0-cp312-cp312-macosx_11_0_arm64.whl"),
        ("cp313-win_amd64", "hostile-1.0-cp313-cp313-win_amd64.whl"),
    ],
)
def test_the_wheel_cibuildwheel_wrote_is_taken(tmp_path: Path, identifier: str, filename: str) -> None:
    build = _build(tmp_path, identifier)
    wheel = _lay_wheel(build.output_dir, filename)
    assert build.built_wheel() == wheel


@pytest.mark.parametrize(
    ("files", "says"),
    [
        (["hostile-1.0-cp312-cp312-macosx_11_0_arm64.whl", "other-1.0-py3-none-any.whl"], "2 wheels"),
        (["hostile-1.0-cp312-cp312-win_amd64.whl"], "does not install on cp312-macosx_arm64"),
        (["not-a-wheel.whl"], "not a wheel filename"),
    ],
)
def test_anything_but_one_fitting_wheel_is_a_failed_build(tmp_path: Path, files: list[str], says: str) -> None:
    build = _build(tmp_path, "cp312-macosx_arm64")
    for name in files:
        _lay_wheel(build.output_dir, name)
    with pytest.raises(CibuildwheelFailed) as info:
        build.built_wheel()
    assert says in info.value.message


@pytest.mark.parametrize("value", ["$HOME", "`id`", 'a"b', "a'b", "a\\b"])
def test_values_that_cibuildwheel_would_expand_are_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(ValueError):
        write_config(tmp_path / "c.toml", {"X": value})


def test_the_director_builds_a_macos_target_through_the_real_cibuildwheel(
    tmp_path: Path, local_upstream: tuple[Path, str]
) -> None:
    """The whole build step for a macOS target on a worker that says it is macOS (faked: no macOS host
    exists here). The real cibuildwheel is run with the worker's command and refuses, on this Linux
    host, to build for macOS: the build ends failed as cibuildwheel-failed with cibuildwheel's own
    words in the log, and nothing of the sdist ran."""
    from builder.build_job import BuildJob
    from builder.build_output import BuildLog
    from builder.capabilities import Capabilities, Interpreter
    from builder.config import load_settings
    from builder.pipeline import BuildDirector
    from tests.conftest import interpreter

    packages, upstream = local_upstream
    marker = tmp_path / "pwned"
    make_sdist(
        tmp_path / "src", "hostile", "1.0", {"pyproject.toml": HOSTILE_PYPROJECT.format(marker=marker)}, packages
    )
    settings = load_settings({"WHEELYARD_DATA_DIR": str(tmp_path / "data"), "WHEELYARD_UPSTREAM_INDEX": upstream})
    target = BuildTarget.parse("cp312-macosx_arm64")
    python = Interpreter(interpreter("3.12"), (3, 12), "cpython", True)
    macos = Capabilities("macos", "arm64", None, None, (python,), {"clang": "clang 17"})
    workdir = tmp_path / "work"
    workdir.mkdir()
    with BuildLog(tmp_path / "build.log") as log:
        outcome = BuildDirector(
            settings, macos, BuildJob("b1", "hostile", "1.0", target, from_source=True), workdir=workdir, log=log
        ).run()
    text = (tmp_path / "build.log").read_text()
    assert outcome.status == "failed", text
    assert isinstance(outcome.error, CibuildwheelFailed), outcome.error
    assert "-m cibuildwheel --only cp312-macosx_arm64" in text
    # cibuildwheel took the worker's options, not the sdist's, and went as far as its macOS installer
    # tools (pkgutil), which only a macOS host has.
    assert "build_frontend: build" in text and 'MAKEFLAGS="-j' in text
    assert "touch" not in text.split("Build options:", 1)[1].split("Here we go", 1)[0]
    assert "Couldn't find 'pkgutil'" in text
    assert not marker.exists()
