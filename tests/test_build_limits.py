"""Limits over everything done for a build, through the whole service: each attack is a real
sdist served by a local upstream index, requested through the API and built by a real root
worker (Celery, bubblewrap). Each test asserts that the attack was contained, that the record
ends with the limit that stopped it (its error's cause and the diagnosis, from the sandbox's or
the unpacking's own record), that the work directory is gone and no shared cache holds
anything of it, and that the same worker goes on to publish an ordinary build.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import signal
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from builder.records import BuildStore, connect
from builder.targets import BuildTarget
from tests.conftest import REDIS_SERVER, RedisDatabases, Stack, make_sdist, upstream_index, wait_until
from tests.test_resilience import (
    SLOW_NAME,
    SLOW_PROJECT,
    assert_one_whole_wheel,
    descendants,
    process_table,
    start_slow_build,
    still_running,
)
from tests.test_resilience import TARGET as COMPILED_TARGET

pytestmark = pytest.mark.slow

TARGET = "py3-none-any"
DISK = 96 * 1024**2
LOG_BYTES = 2 * 1024**2
CACHE = Path(__file__).resolve().parent.parent / "bench" / ".cache"


def setup_py_project(name: str, body: str, requires: tuple[str, ...] = ("setuptools>=61",)) -> dict[str, str]:
    """A setuptools project whose setup.py runs ``body`` first: in every build hook, in the sandbox."""
    listed = ", ".join(f'"{r}"' for r in requires)
    return {
        "pyproject.toml": f'[build-system]\nrequires = [{listed}]\nbuild-backend = "setuptools.build_meta"\n',
        "setup.py": f"{body}\nfrom setuptools import setup\nsetup(name={name!r}, version='0.1.0', py_modules=[])\n",
    }


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("upstream")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, packages: Path) -> Iterator[Stack]:
    """Index, API and one root worker for the module's attacks, on a Redis database of their own;
    the disk limit is small (96 MiB) so that the attacks stay cheap, the log limit 2 MiB."""
    with upstream_index(packages) as upstream, RedisDatabases(REDIS_SERVER) as databases:
        stack = Stack(
            tmp_path_factory.mktemp("stack"),
            databases.take(),
            WHEELYARD_UPSTREAM_INDEX=upstream,
            WHEELYARD_BUILD_DISK=str(DISK),
            WHEELYARD_BUILD_LOG_BYTES=str(LOG_BYTES),
            WHEELYARD_BUILD_TIMEOUT="120",
        )
        try:
            stack.start_index_and_api()
            stack.start_worker("worker-limits", TARGET)
            yield stack
        finally:
            stack.stop_all()


def build(stack: Stack, name: str) -> dict[str, Any]:
    response = stack.request(f"{name}==0.1.0", [TARGET], from_source=True)
    assert response.status_code == 202, response.text
    return stack.wait_done(response.json()["builds"][0]["id"], timeout=300)


def assert_worker_goes_on(stack: Stack, packages: Path, tmp_path: Path, after: str) -> None:
    """No work directory left, no shared uv cache, and the same worker publishes an ordinary build."""
    work = stack.data_dir / "work"
    assert not work.exists() or sorted(p.name for p in work.iterdir()) == []
    assert not (stack.data_dir / "cache").exists()
    worker = stack.procs["worker-limits"]
    assert worker.poll() is None, stack.log("worker-limits")
    name = f"wheelyard-after-{after}"
    make_sdist(tmp_path / "plain", name, "0.1.0", setup_py_project(name, "PLAIN = True"), packages)
    done = build(stack, name)
    assert done["status"] == "published", (done, stack.log("worker-limits"))
    assert done["worker"].startswith("worker-limits-")


def assert_stopped_by(done: dict[str, Any], cause: str, category: str) -> None:
    assert done["status"] == "failed", done
    assert done["error"]["cause"] == cause, done["error"]
    assert done["error"]["message"] and done["error"]["hint"], done["error"]
    primary = done["diagnosis"]["primary"]
    assert primary["category"] == category, primary
    assert primary["rule"].startswith("sandbox-"), primary


# -- unpacking ------------------------------------------------------------------------------------


def test_3_gib_file_in_a_small_sdist_is_refused_before_it_is_unpacked(
    service: Stack, packages: Path, tmp_path: Path
) -> None:
    name = "wheelyard-zeros-bomb"
    cached = CACHE / f"{name.replace('-', '_')}-0.1.0.tar.gz"
    if not cached.exists():
        # 3 GiB of zeros: sparse on disk, about 3 MB once gzipped; made once and kept.
        project = setup_py_project(name, "PLAIN = True")
        zeros = {"data/zeros.bin": 3 * 1024**3}
        made = make_sdist(tmp_path / "src", name, "0.1.0", project, tmp_path / "dist", zeros=zeros)
        CACHE.mkdir(parents=True, exist_ok=True)
        shutil.move(made, cached)
    assert cached.stat().st_size < 16 * 1024**2
    shutil.copy(cached, packages / cached.name)

    done = build(service, name)
    assert_stopped_by(done, "disk-full", "disk-full")
    assert done["error"]["error"] == "unsafe-sdist"
    assert "the build's disk limit" in done["error"]["message"]
    assert_worker_goes_on(service, packages, tmp_path, "zeros")


def fat_wheel(dest: Path, name: str, blob_bytes: int) -> Path:
    """A made-up wheel of ``name`` 1.0 with a ``blob_bytes`` member of zeros (tiny once deflated)."""
    module = name.replace("-", "_")
    path = dest / f"{module}-1.0-py3-none-any.whl"
    info = f"{module}-1.0.dist-info"
    records = []

    def digest(data_hash: Any) -> str:
        return "sha256=" + base64.urlsafe_b64encode(data_hash.digest()).rstrip(b"=").decode()

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        small = {
            f"{module}/__init__.py": b"",
            f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode(),
            f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        }
        for member, data in small.items():
            zf.writestr(member, data)
            records.append(f"{member},{digest(hashlib.sha256(data))},{len(data)}")
        blob, chunk, sha = f"{module}/blob.bin", bytes(1024**2), hashlib.sha256()
        with zf.open(blob, "w", force_zip64=True) as out:
            for _ in range(blob_bytes // len(chunk)):
                out.write(chunk)
                sha.update(chunk)
        records.append(f"{blob},{digest(sha)},{blob_bytes}")
        records.append(f"{info}/RECORD,,")
        zf.writestr(f"{info}/RECORD", "\n".join(records) + "\n")
    return path


def test_huge_member_in_a_small_wheel_of_a_build_requirement_stays_inside_the_disk_limit(
    service: Stack, packages: Path, tmp_path: Path
) -> None:
    # The 2 GiB member against an 8 GiB limit, scaled down: 256 MiB against 96 MiB.
    wheel = fat_wheel(packages, "wheelyard-fat-requirement", 256 * 1024**2)
    assert wheel.stat().st_size < 2 * 1024**2
    name = "wheelyard-needs-fat"
    project = setup_py_project(name, "PLAIN = True", ("setuptools>=61", "wheelyard-fat-requirement==1.0"))
    make_sdist(tmp_path / "src", name, "0.1.0", project, packages)

    done = build(service, name)
    assert_stopped_by(done, "disk-full", "disk-full")
    assert_worker_goes_on(service, packages, tmp_path, "fat")


# -- the sandbox's limits ---------------------------------------------------------------------------

MANY_FILES = """
import os
os.makedirs("flood", exist_ok=True)
for i in range(300_000):
    open(f"flood/{i}", "w").close()
"""

DEEP_TREE = """
import os
fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
for _ in range(1200):
    try:
        os.mkdir("dddd", dir_fd=fd)
    except FileExistsError:
        pass
    child = os.open("dddd", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
    os.close(fd)
    fd = child
os.close(fd)
"""

FORK_BOMB = """
import os
while True:
    try:
        os.fork()
    except OSError:
        pass
"""

LOG_FLOOD = """
import sys
line = "x" * 1000 + "\\n"
while True:
    sys.stdout.write(line)
"""


def test_300000_empty_files_are_stopped_at_the_file_count_limit(service: Stack, packages: Path, tmp_path: Path) -> None:
    name = "wheelyard-inode-flood"
    make_sdist(tmp_path / "src", name, "0.1.0", setup_py_project(name, MANY_FILES), packages)
    done = build(service, name)
    assert_stopped_by(done, "too-many-files", "too-many-files")
    assert "too many files (limit 200000)" in done["error"]["message"]
    assert_worker_goes_on(service, packages, tmp_path, "inodes")


def test_1200_level_deep_tree_is_built_and_its_work_directory_removed(
    service: Stack, packages: Path, tmp_path: Path
) -> None:
    name = "wheelyard-deep-tree"
    make_sdist(tmp_path / "src", name, "0.1.0", setup_py_project(name, DEEP_TREE), packages)
    done = build(service, name)
    # Nothing over a limit: the build is published, and its 1,200 levels go with its work directory.
    assert done["status"] == "published", (done, service.log("worker-limits"))
    assert_worker_goes_on(service, packages, tmp_path, "deep")


def test_fork_bomb_is_too_many_processes(service: Stack, packages: Path, tmp_path: Path) -> None:
    name = "wheelyard-fork-bomb"
    make_sdist(tmp_path / "src", name, "0.1.0", setup_py_project(name, FORK_BOMB), packages)
    done = build(service, name)
    assert_stopped_by(done, "too-many-processes", "too-many-processes")
    assert_worker_goes_on(service, packages, tmp_path, "forks")


def test_log_flood_is_log_too_large(service: Stack, packages: Path, tmp_path: Path) -> None:
    name = "wheelyard-log-flood"
    make_sdist(tmp_path / "src", name, "0.1.0", setup_py_project(name, LOG_FLOOD), packages)
    done = build(service, name)
    assert_stopped_by(done, "log-too-large", "log-too-large")
    assert f"log too large (limit {LOG_BYTES} bytes)" in done["error"]["message"]
    assert_worker_goes_on(service, packages, tmp_path, "log")


NON_WHEEL_BACKEND = {
    "pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n',
    "backend.py": """
import os


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    with open(os.path.join(wheel_directory, "not-a-wheel.txt"), "w") as fh:
        fh.write("surprise")
    return "not-a-wheel.txt"
""",
    "setup.py": "",
}


def test_hook_returning_a_non_wheel_name_ends_failed_not_stuck(service: Stack, packages: Path, tmp_path: Path) -> None:
    name = "wheelyard-not-a-wheel"
    make_sdist(tmp_path / "src", name, "0.1.0", NON_WHEEL_BACKEND, packages)
    done = build(service, name)
    assert done["status"] == "failed", done
    assert done["error"]["error"] and done["error"]["message"] and done["error"]["hint"], done["error"]
    assert "Traceback" not in done["error"]["message"]
    assert_worker_goes_on(service, packages, tmp_path, "non-wheel")


# -- a worker lost mid-build --------------------------------------------------------------------------


def test_killed_worker_build_is_recovered_by_the_next_worker_within_a_minute(make_stack: Any, tmp_path: Path) -> None:
    from builder.config import Settings
    from builder.tasks import BUILD_TASK, create_celery_app, time_limits

    limits = time_limits(Settings().limits.wall_seconds)
    assert limits.visibility > 2000  # Celery's own redelivery would take over half an hour
    packages = tmp_path / "upstream"
    make_sdist(tmp_path / "src", SLOW_NAME, "0.1.0", SLOW_PROJECT, packages)
    with upstream_index(packages) as upstream:
        s = make_stack(db=24, WHEELYARD_UPSTREAM_INDEX=upstream)
        worker, build_id = start_slow_build(s)
        tree = descendants(worker.pid, process_table())
        killed_at = time.monotonic()
        s.stop("worker-a", signal.SIGKILL)  # the machine is lost: worker, pool and build at once
        wait_until(lambda: not still_running(tree), 15, "the lost worker's build processes to end")
        left = [p for p in (s.data_dir / "work").iterdir() if p.is_dir()]
        assert left, "the killed attempt left its work directory"

        second = s.start(
            "worker-b",
            "worker",
            "--targets",
            COMPILED_TARGET,
            "--name",
            f"worker-b-{os.getpid()}@test",
            "--concurrency",
            "2",
        )
        wait_until(lambda: s._worker_listed("worker-b") or second.poll() is not None, 120, "worker-b to register")
        assert second.poll() is None, s.log("worker-b")
        assert not any(p.exists() for p in left)  # swept at the worker's start

        wait_until(
            lambda: (s.build(build_id)["worker"] or "").startswith("worker-b-"),
            120,
            "the lost build to reach the surviving worker",
            interval=0.5,
        )
        recovered = time.monotonic() - killed_at
        assert recovered < 100, recovered
        # The lost worker's own job, as Celery hands it out once its visibility timeout passes:
        # stale, skipped by the second pool process while the first builds.
        app = create_celery_app(Settings(), s.redis_url)
        app.send_task(BUILD_TASK, args=[build_id], queue=BuildTarget.parse(COMPILED_TARGET).queue)
        wait_until(lambda: "is stale" in s.log("worker-b"), 60, "the stale job to be skipped")

        done = s.wait_done(build_id, timeout=240)
        assert done["status"] == "published", (done, s.log("worker-b"))
        assert done["runs"] == 2, done
        stored = BuildStore(connect(s.redis_url)).get(build_id)
        assert stored is not None and stored.recoveries == 1
        print(f"worker lost -> recovered after {recovered:.1f} s -> published {time.monotonic() - killed_at:.1f} s")
        assert_one_whole_wheel(s, done, tmp_path)
        wait_until(lambda: list((s.data_dir / "work").iterdir()) == [], 30, "the work directories to be removed")
