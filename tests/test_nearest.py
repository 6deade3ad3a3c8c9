"""The nearest release that works for a failed build (builder/nearest.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis
from packaging.version import Version

from builder.nearest import BUILT_HERE, UPSTREAM_WHEEL, NearestReleases, describe, fitting_versions, nearest
from builder.records import BuildStore
from builder.targets import BuildTarget
from builder.upstream import DistFile, SimpleIndex
from tests.conftest import free_port, make_sdist, wait_until

CP313 = BuildTarget.parse("cp313-manylinux_x86_64")
GLIBC = (2, 28)


def dist(filename: str, *, yanked: bool = False, requires_python: str | None = None) -> DistFile:
    return DistFile(filename, f"https://files.example/{filename}", None, requires_python, yanked)


@pytest.fixture
def store(redis_url: str) -> BuildStore:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    return BuildStore(client)


def test_only_final_releases_with_a_wheel_for_the_target_fit() -> None:
    files = [
        dist("demo-1.0.tar.gz"),
        dist("demo-1.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"),
        dist("demo-1.1-cp313-cp313-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"),
        dist("demo-1.2-cp313-cp313-manylinux_2_34_x86_64.whl"),  # newer glibc than the deployment allows
        dist("demo-1.3-cp313-cp313-manylinux_2_17_x86_64.whl", yanked=True),
        dist("demo-1.4rc1-cp313-cp313-manylinux_2_17_x86_64.whl"),
        dist("demo-1.5-py3-none-any.whl", requires_python="<3.13"),
        dist("demo-1.6-cp313-cp313-musllinux_1_2_x86_64.whl"),
        dist("demo-1.7-py3-none-any.whl"),
        dist("demo-1.8-cp38-abi3-manylinux_2_17_x86_64.whl"),
    ]
    assert fitting_versions("demo", files, CP313, GLIBC) == [Version("1.1"), Version("1.7"), Version("1.8")]


def test_the_nearest_on_each_side_and_what_was_built_here_first() -> None:
    upstream = [Version("0.8"), Version("2.4.0"), Version("3.0")]
    built = [Version("2.3.9"), Version("2.4.0"), Version("2.5rc1")]
    found = nearest(Version("2.3.10"), upstream, built)
    assert found == {
        "newer": {"version": "2.4.0", "source": BUILT_HERE},
        "older": {"version": "2.3.9", "source": BUILT_HERE},
    }
    assert nearest(Version("0.9"), [Version("1.0")], []) == {
        "newer": {"version": "1.0", "source": UPSTREAM_WHEEL},
        "older": None,
    }
    assert nearest(Version("1.0"), [Version("1.0")], []) is None
    assert describe(found, "cp313-manylinux_x86_64") == (
        "nearest releases that work for cp313-manylinux_x86_64: newer 2.4.0 (built here), older 2.3.9 (built here)"
    )


def test_a_release_without_a_cp313_wheel_on_the_real_upstream(store: BuildStore) -> None:
    """numpy 1.26.4 has no wheel for CPython 3.13 (and does not build for it); 2.1.0 is the first
    release with one. Read from the real upstream mirror's Simple API, then from the cache alone."""
    finder = NearestReleases(store, SimpleIndex("https://pypi.org/simple/"), ttl=600, glibc_max=GLIBC)
    found = finder.for_build("numpy", "1.26.4", CP313.identifier)
    assert found == {"newer": {"version": "2.1.0", "source": UPSTREAM_WHEEL}, "older": None}
    key = finder.cache_key("numpy", CP313)
    assert 0 < store.redis.ttl(key) <= 600 and "2.1.0" in json.loads(store.redis.get(key) or "[]")
    # From the cache: an upstream that does not answer is never asked.
    unreachable = SimpleIndex(f"http://127.0.0.1:{free_port()}/simple/", timeout=2)
    cached = NearestReleases(store, unreachable, ttl=600, glibc_max=GLIBC)
    assert cached.for_build("numpy", "1.26.4", CP313.identifier) == found
    # For CPython 3.12, 1.26.4 itself has wheels: the nearest are its neighbours.
    cp312 = finder.for_build("numpy", "1.26.4", "cp312-manylinux_x86_64")
    assert cp312 is not None and cp312["older"] == {"version": "1.26.3", "source": UPSTREAM_WHEEL}


def test_a_release_published_here_is_named_as_built_here(store: BuildStore) -> None:
    for version, status in (("1.0", "published"), ("1.1", "failed"), ("1.3", "published")):
        record = store.create(
            name="Demo_Pkg",
            version=version,
            target=CP313.identifier,
            requirement="demo-pkg",
            from_source=True,
            queue="q",
        )
        store.update(record.id, status=status)
    store.create(
        name="demo-pkg", version="1.2", target="cp312-manylinux_x86_64", requirement="x", from_source=True, queue="q"
    )
    finder = NearestReleases(store, SimpleIndex("https://pypi.org/simple/"), ttl=60, glibc_max=GLIBC)
    assert sorted(finder.built_versions("demo-pkg", CP313.identifier)) == [Version("1.0"), Version("1.3")]
    assert nearest(Version("1.1"), [], finder.built_versions("demo-pkg", CP313.identifier)) == {
        "newer": {"version": "1.3", "source": BUILT_HERE},
        "older": {"version": "1.0", "source": BUILT_HERE},
    }


FAILING_SETUP = """
from setuptools import setup
raise SystemExit("error: this release of wy-nearest does not build anywhere")
setup()
"""


@pytest.mark.slow
def test_a_failed_build_names_the_nearest_release_in_the_api_and_the_cli(make_stack: Any, tmp_path: Path) -> None:
    """The local upstream (pypiserver in front of PyPI) has wy-nearest 1.0 as an sdist that fails and
    1.1 as a wheel for cp313 (a file it lists; it is never downloaded here)."""
    from tests.conftest import upstream_index

    packages = tmp_path / "upstream"
    make_sdist(
        tmp_path / "src",
        "wy-nearest",
        "1.0",
        {
            "pyproject.toml": '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n',
            "setup.py": FAILING_SETUP,
        },
        packages,
    )
    (packages / "wy_nearest-1.1-cp313-cp313-manylinux_2_17_x86_64.manylinux2014_x86_64.whl").write_bytes(b"listed")
    with upstream_index(packages) as upstream:
        stack = make_stack(db=1, WHEELYARD_UPSTREAM_INDEX=upstream)
        stack.start_index_and_api()
        stack.start_worker("worker", CP313.identifier)
        response = stack.request("wy-nearest==1.0", [CP313.identifier])
        assert response.status_code == 202, response.text
        build_id = response.json()["builds"][0]["id"]
        done = stack.wait_done(build_id, timeout=300)
    assert done["status"] == "failed", done
    assert done["nearest_release"] == {"newer": {"version": "1.1", "source": UPSTREAM_WHEEL}, "older": None}
    log = wait_until(
        lambda: "nearest releases" in (text := stack_log(stack, build_id)) and text, 30, "the log to name it"
    )
    assert f"nearest releases that work for {CP313.identifier}: newer 1.1 (upstream wheel)" in log
    status = subprocess.run(
        [sys.executable, "-m", "server.cli", "status", build_id],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0, status.stderr
    assert "works instead: 1.1 (newer, upstream wheel)" in status.stdout


def stack_log(stack: Any, build_id: str) -> str:
    import requests

    return requests.get(f"{stack.api}/api/builds/{build_id}/log", timeout=10).text
