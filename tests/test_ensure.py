"""``wheelyard ensure`` on real parts: real closures from PyPI for CPython 3.12 and 3.13, a real
resolver (uv), real locks written by uv, the real index, API and worker, and then fresh venvs of each
interpreter that install everything from wheelyard alone: pip and uv reach nothing else, their proxy
is a local port that refuses every connection and only the index on 127.0.0.1 is exempt.

The closures were picked so that upstream has wheels for most of them (mirroring is fast); the one
real compiled build is a test-made sdist that fails, as a broken release does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from builder.publish import publish_wheel
from tests.conftest import Stack, free_port, interpreter, isolated_pip_env, make_sdist, make_venv

pytestmark = pytest.mark.slow

TARGETS = ["cp312-manylinux_x86_64", "cp313-manylinux_x86_64"]
WORKER_TARGETS = "cp312-manylinux_x86_64,cp313-manylinux_x86_64,py3-none-any"


@pytest.fixture(scope="module")
def refusing_proxy() -> str:
    """A local port nothing listens on: a client sent through it as a proxy reaches nothing."""
    return f"http://127.0.0.1:{free_port()}"


def offline_env(proxy: str, **extra: str) -> dict[str, str]:
    """pip and uv with no configuration, every connection through a proxy that refuses, but the index's."""
    return isolated_pip_env(
        HTTP_PROXY=proxy,
        HTTPS_PROXY=proxy,
        http_proxy=proxy,
        https_proxy=proxy,
        NO_PROXY="127.0.0.1",
        no_proxy="127.0.0.1",
        PIP_NO_CACHE_DIR="1",
        UV_PYTHON_DOWNLOADS="never",
        **extra,
    )


def ensure(stack: Stack, cwd: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """The real command line, as a CI job runs it."""
    return subprocess.run(
        [sys.executable, "-m", "server.cli", "ensure", "--api-url", stack.api, *args],
        env=stack.env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def pip_install_offline(stack: Stack, version: str, tmp: Path, proxy: str, *args: str) -> Path:
    python = make_venv(interpreter(version), tmp / f"venv{version}")
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "--index-url", stack.simple, "--only-binary", ":all:", *args],
        env=offline_env(proxy),
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return python


def imports(python: Path, *modules: str) -> None:
    code = "import importlib, sys\nfor m in sys.argv[1:]: importlib.import_module(m)"
    result = subprocess.run([str(python), "-c", code, *modules], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def pypi_stack(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Index, API and a worker for cp312, cp313 and pure wheels; upstream is PyPI. Shared by the
    PyPI tests of this module (on a Redis database of its own)."""
    from tests.conftest import REDIS_SERVER, RedisDatabases

    with RedisDatabases(REDIS_SERVER) as databases:
        stack = Stack(tmp_path_factory.mktemp("ensure-stack"), databases.take())
        try:
            stack.start_index_and_api()
            stack.start_worker("worker-ensure", WORKER_TARGETS)
            yield stack
        finally:
            stack.stop_all()


def test_real_closures_for_two_pythons_install_from_wheelyard_alone(
    pypi_stack: Stack, tmp_path: Path, refusing_proxy: str
) -> None:
    stack = pypi_stack
    # A web/async app with C extensions (aiohttp, frozenlist, multidict, yarl, propcache) and their
    # pure dependencies; a scientific package that needs numpy; extras, and markers that differ
    # between the two Pythons; constraints and includes, as teams keep them.
    (tmp_path / "web.txt").write_text("aiohttp==3.11.11\n")
    (tmp_path / "science.txt").write_text("numexpr==2.10.2\n")
    (tmp_path / "extras.txt").write_text(
        "requests[socks]==2.32.3\ntomli==2.2.1 ; python_version < \"3.13\"\nrich==13.9.4 ; python_version >= '3.13'\n"
    )
    (tmp_path / "constraints.txt").write_text("idna<4\n")
    (tmp_path / "requirements.txt").write_text("-r web.txt\n-r science.txt\n-r extras.txt\n-c constraints.txt\n")

    first = ensure(stack, tmp_path, "-r", "requirements.txt", "-t", "cp31{2,3}-manylinux_x86_64", "--wait")
    assert first.returncode == 0, first.stdout + first.stderr + stack.log("worker-ensure")
    assert "ok: all" in first.stdout
    # Progress went to the log as plain lines of counts.
    assert "waiting for a worker" in first.stderr and "failed" in first.stderr

    again = ensure(stack, tmp_path, "-r", "requirements.txt", "-t", TARGETS[0], "-t", TARGETS[1], "--json", "r.json")
    assert again.returncode == 0, again.stdout + again.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["ok"] and report["done"] and report["errors"] == []
    assert {i["outcome"] for i in report["items"]} == {"present"}, report["counts"]
    closures = {t: {r.split("==")[0] for r in pins} for t, pins in report["closures"].items()}
    assert {"aiohttp", "multidict", "yarl", "numexpr", "numpy", "requests", "pysocks"} <= closures[TARGETS[0]]
    assert "tomli" in closures[TARGETS[0]] and "tomli" not in closures[TARGETS[1]]
    assert "rich" in closures[TARGETS[1]] and "rich" not in closures[TARGETS[0]]
    by_key = {(i["name"], i["target"]): i for i in report["items"]}
    # A pure-Python distribution is one wheel serving both targets; a compiled one is a wheel per target.
    assert by_key[("idna", "py3-none-any")]["serves"] == TARGETS
    assert {("numpy", t) for t in TARGETS} <= set(by_key)

    python312 = pip_install_offline(stack, "3.12", tmp_path, refusing_proxy, "-r", "requirements.txt")
    imports(python312, "aiohttp", "numexpr", "numpy", "requests", "socks", "tomli")
    python313 = pip_install_offline(stack, "3.13", tmp_path, refusing_proxy, "-r", "requirements.txt")
    imports(python313, "aiohttp", "numexpr", "numpy", "requests", "socks", "rich")


def test_locks_written_by_uv_are_ensured_and_uv_syncs_from_wheelyard_alone(
    pypi_stack: Stack, tmp_path: Path, refusing_proxy: str
) -> None:
    from uv import find_uv_bin

    uv = str(find_uv_bin())
    project = tmp_path / "app"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[project]\nname = "app"\nversion = "0.1.0"\nrequires-python = ">=3.12"\n'
        'dependencies = ["httpx==0.28.1", "msgpack==1.1.0", "tomli==2.2.1; python_version < \'3.13\'"]\n'
        '\n[dependency-groups]\ndev = ["iniconfig==2.0.0"]\n'
    )
    env = isolated_pip_env(UV_CACHE_DIR=str(tmp_path / "uv-cache"), UV_PYTHON_DOWNLOADS="never")
    python = ["--python", interpreter("3.12")]
    for cmd in ([uv, "lock", *python], [uv, "export", *python, "--format", "pylock.toml", "-o", "pylock.toml"]):
        result = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr

    for lock in ("uv.lock", "pylock.toml"):
        done = ensure(
            pypi_stack, project, "--lock", lock, "-t", "cp31{2,3}-manylinux_x86_64", "--wait", "--json", "r.json"
        )
        assert done.returncode == 0, lock + done.stdout + done.stderr
        report = json.loads((project / "r.json").read_text())
        names = {t: {r.split("==")[0] for r in pins} for t, pins in report["closures"].items()}
        assert {"httpx", "httpcore", "h11", "anyio", "idna", "certifi", "msgpack", "iniconfig"} <= names[TARGETS[0]]
        assert "tomli" in names[TARGETS[0]] and "tomli" not in names[TARGETS[1]], lock

    # uv, told of wheelyard's index alone, syncs the project on 3.13 (binary only, no other index reachable).
    sync = subprocess.run(
        [uv, "sync", "--python", interpreter("3.13"), "--index-url", pypi_stack.simple, "--no-build"],
        cwd=project,
        env=offline_env(refusing_proxy, UV_CACHE_DIR=str(tmp_path / "uv-offline-cache")),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert sync.returncode == 0, sync.stdout + sync.stderr
    imports(project / ".venv" / "bin" / "python", "httpx", "msgpack", "iniconfig")


BROKEN_SETUP = """
from setuptools import Extension, setup
setup(ext_modules=[Extension("brokenext._speedups", ["src/speedups.c"])], packages=["brokenext"],
      package_dir={"": "src"})
"""


@pytest.fixture
def local_stack(make_stack: Any, local_upstream: tuple[Path, str], tmp_path: Path) -> tuple[Stack, Path]:
    """A stack whose upstream is a local index of the test's sdists in front of PyPI."""
    packages, upstream = local_upstream
    stack: Stack = make_stack(db=43, WHEELYARD_UPSTREAM_INDEX=upstream)
    stack.start_index_and_api()
    stack.start_worker("worker-ensure-local", "cp312-manylinux_x86_64,py3-none-any")
    return stack, packages


def private_toolz(tmp: Path) -> Path:
    """A real wheel of a private project named like PyPI's toolz, as a team builds and uploads its own."""
    from uv import find_uv_bin

    sdist_dir = tmp / "private-src"
    make_sdist(
        sdist_dir,
        "toolz",
        "1.5.0",
        {
            "pyproject.toml": '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n'
            '[project]\nname = "toolz"\nversion = "1.5.0"\n',
            "toolz/__init__.py": "PRIVATE = True\n",
        },
        tmp / "private-dist",
    )
    out = tmp / "private-wheel"
    env = isolated_pip_env(UV_CACHE_DIR=str(tmp / "uv-cache"), UV_PYTHON_DOWNLOADS="never")
    result = subprocess.run(
        [str(find_uv_bin()), "build", "--wheel", "-o", str(out), str(sdist_dir / "toolz-1.5.0")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return next(out.glob("toolz-1.5.0-*.whl"))


def test_a_private_name_is_taken_from_the_index_and_a_failing_package_is_diagnosed(
    local_stack: tuple[Stack, Path], tmp_path: Path, refusing_proxy: str
) -> None:
    stack, upstream_dir = local_stack
    make_sdist(
        tmp_path / "broken-src",
        "brokenext",
        "1.0",
        {
            "pyproject.toml": '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n'
            '[project]\nname = "brokenext"\nversion = "1.0"\ndependencies = ["idna>=3"]\n',
            "setup.py": BROKEN_SETUP,
            "src/brokenext/__init__.py": "",
            "src/speedups.c": "#include <wheelyard_test_missing_library.h>\nint x;\n",
        },
        upstream_dir,
    )
    wheel = private_toolz(tmp_path)
    publish_wheel(wheel, index_url=f"http://127.0.0.1:{stack.index_port}", user="wheelyard", password=stack.password)

    (tmp_path / "requirements.txt").write_text("brokenext==1.0\ncytoolz==1.0.1\ntoolz\n")
    result = ensure(
        stack, tmp_path, "-r", "requirements.txt", "-t", "cp312-manylinux_x86_64", "--wait", "--json", "r.json"
    )
    assert result.returncode == 1, result.stdout + result.stderr
    # The failure, its diagnosis and its fix are printed; the private name is said.
    assert "FAILED brokenext==1.0 for cp312-manylinux_x86_64" in result.stdout
    assert "cause: " in result.stdout and "wheelyard_test_missing_library.h" in result.stdout
    assert "private: toolz is taken from the index" in result.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    outcomes = {i["name"]: i["outcome"] for i in report["items"]}
    assert outcomes.pop("brokenext") == "failed"
    assert outcomes.pop("toolz") == "private"
    assert set(outcomes.values()) <= {"mirrored", "published"} and {"cytoolz", "idna"} <= set(outcomes)
    assert report["private"] == ["toolz"]

    # Nothing was mirrored or built under the private name, and asking for it is refused.
    listed = requests.get(f"{stack.api}/api/builds", params={"name": "toolz"}, timeout=30).json()
    assert listed["builds"] == []
    refused = stack.request("toolz==1.0.0", ["cp312-manylinux_x86_64"])
    assert refused.status_code == 409 and refused.json()["error"] == "private-name", refused.text
    page = requests.get(f"{stack.simple}toolz/", timeout=30).text
    assert wheel.name in page and "toolz-1.0.0" not in page

    # Every other wheel is on the index: a client installs them (and the private toolz) from it alone.
    python = pip_install_offline(stack, "3.12", tmp_path, refusing_proxy, "cytoolz==1.0.1", "toolz", "idna")
    # (cytoolz itself imports toolz's internals, which the private project does not have.)
    result = subprocess.run([str(python), "-c", "import idna, toolz; print(toolz.PRIVATE)"], capture_output=True)
    assert result.returncode == 0 and result.stdout.strip() == b"True", result.stderr


def test_a_pure_python_sdist_is_built_once_for_every_target(
    local_stack: tuple[Stack, Path], tmp_path: Path, refusing_proxy: str
) -> None:
    stack, upstream_dir = local_stack
    make_sdist(
        tmp_path / "pure-src",
        "puresdist",
        "1.0",
        {
            "pyproject.toml": '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n'
            '[project]\nname = "puresdist"\nversion = "1.0"\n',
            "puresdist/__init__.py": "PURE = True\n",
        },
        upstream_dir,
    )
    (tmp_path / "requirements.txt").write_text("puresdist==1.0\n")
    # The worker serves cp312 and pure wheels only: a build for cp313 would wait for a worker forever.
    result = ensure(stack, tmp_path, "-r", "requirements.txt", "-t", "cp31{2,3}-manylinux_x86_64", "--wait")
    assert result.returncode == 0, result.stdout + result.stderr + stack.log("worker-ensure-local")
    builds = requests.get(f"{stack.api}/api/builds", params={"name": "puresdist"}, timeout=30).json()["builds"]
    assert [(b["target"], b["status"], b["wheel"]) for b in builds] == [
        ("cp312-manylinux_x86_64", "published", "puresdist-1.0-py3-none-any.whl")
    ]
    python = pip_install_offline(stack, "3.13", tmp_path, refusing_proxy, "puresdist==1.0")
    imports(python, "puresdist")
