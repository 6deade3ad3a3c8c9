"""Hostile conditions and broken parts, on real processes: a worker killed mid-build, Redis
stopped under a queue of builds, requests without the API token.

The slow build is real: a C extension compiled by gcc for cp312, whose ``build_ext`` first
waits a few seconds so that the test can kill its worker while it compiles. Its sdist is
served by a local upstream index that sends everything else (setuptools) to PyPI.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import signal
import subprocess
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from server.embedded_redis import EmbeddedRedis
from tests.conftest import Stack, interpreter, isolated_pip_env, make_sdist, wait_until

pytestmark = pytest.mark.slow

TARGET = "cp312-manylinux_x86_64"
SLOW_NAME = "wheelyard-slow-demo"
MARKER = "wheelyard-test: compiling after a pause"
PAUSE_SECONDS = 5

SLOW_PROJECT = {
    "pyproject.toml": """
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"
""",
    "setup.py": f"""
import time

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class SlowBuildExt(build_ext):
    def run(self):
        print({MARKER!r}, flush=True)
        time.sleep({PAUSE_SECONDS})
        super().run()


setup(
    name="{SLOW_NAME}",
    version="0.1.0",
    ext_modules=[Extension("wheelyard_slow_demo", ["demo.c"])],
    cmdclass={{"build_ext": SlowBuildExt}},
)
""",
    "demo.c": """
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *answer(PyObject *self, PyObject *args) { return PyLong_FromLong(42); }

static PyMethodDef methods[] = {{"answer", answer, METH_NOARGS, "42"}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "wheelyard_slow_demo", NULL, -1, methods};

PyMODINIT_FUNC PyInit_wheelyard_slow_demo(void) { return PyModule_Create(&module); }
""",
}


@pytest.fixture
def slow_upstream(local_upstream: tuple[Path, str], tmp_path: Path) -> str:
    """The local upstream index, holding the slow sdist."""
    packages, url = local_upstream
    make_sdist(tmp_path / "src", SLOW_NAME, "0.1.0", SLOW_PROJECT, packages)
    return url


# -- processes ----------------------------------------------------------------------------------


def process_table() -> dict[int, tuple[int, str, int, str]]:
    """pid -> (ppid, command name, start time, state) of every process of this host (pid namespace)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            data = (entry / "stat").read_text()
        except OSError:
            continue
        comm = data[data.index("(") + 1 : data.rindex(")")]
        rest = data[data.rindex(")") + 2 :].split()
        table[int(entry.name)] = (int(rest[1]), comm, int(rest[19]), rest[0])
    return table


def descendants(pid: int, table: dict[int, tuple[int, str, int, str]]) -> dict[int, tuple[int, str, int, str]]:
    out: dict[int, tuple[int, str, int, str]] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, info in table.items():
            if info[0] == parent and child not in out:
                out[child] = info
                frontier.append(child)
    return out


def still_running(procs: dict[int, tuple[int, str, int, str]]) -> list[str]:
    """Those of ``procs`` that still run (the same process: same start time; zombies do not count)."""
    now = process_table()
    return [
        f"{pid} {info[1]}"
        for pid, info in procs.items()
        if pid in now and now[pid][2] == info[2] and now[pid][3] not in ("Z", "X")
    ]


def build_cgroups(pids: list[int]) -> list[Path]:
    """The cgroups the sandbox made for builds of the processes ``pids`` (named wheelyard-PID-*)."""
    root = Path("/sys/fs/cgroup")
    found: list[Path] = []
    for depth in range(4):
        for pid in pids:
            found += root.glob("/".join(["*"] * depth + [f"wheelyard-{pid}-*"]))
    return found


def no_process_left_in_cgroups(pids: list[int]) -> bool:
    """The killed processes' build cgroups are empty; they are removed, as a killed worker cannot."""
    groups = build_cgroups(pids)
    if any((g / "cgroup.procs").read_text().split() for g in groups):
        return False
    for group in groups:
        with contextlib.suppress(OSError):
            group.rmdir()
    return True


# -- the build and the index --------------------------------------------------------------------


def build_log(stack: Stack, build_id: str) -> str:
    return requests.get(f"{stack.api}/api/builds/{build_id}/log", timeout=10).text


def wait_compiling(stack: Stack, build_id: str) -> None:
    wait_until(lambda: MARKER in build_log(stack, build_id), 180, "the build to reach its compiler", interval=0.1)


def start_slow_build(stack: Stack) -> tuple[subprocess.Popen[bytes], str]:
    """Index, API and one worker ("worker-a"), and the slow sdist requested: (the worker, the build
    id), once the build is compiling."""
    stack.start_index_and_api()
    worker = stack.start_worker("worker-a", TARGET)
    response = stack.request(f"{SLOW_NAME}==0.1.0", [TARGET])
    assert response.status_code == 202, response.text
    build_id = response.json()["builds"][0]["id"]
    wait_compiling(stack, build_id)
    return worker, build_id


def index_wheels(stack: Stack, project: str) -> list[str]:
    page = requests.get(f"{stack.simple}{project}/", timeout=10)
    if page.status_code == 404:
        return []
    page.raise_for_status()
    return sorted(set(re.findall(r"([A-Za-z0-9_.+-]+\.whl)", page.text)))


def assert_one_whole_wheel(stack: Stack, done: dict[str, Any], tmp_path: Path) -> None:
    """Exactly one wheel for the target on the index, the record's, and pip downloads it whole."""
    assert index_wheels(stack, SLOW_NAME) == [done["wheel"]]
    on_disk = sorted(p.name for p in (stack.data_dir / "wheels").rglob("*.whl"))
    assert on_disk == [done["wheel"]]
    dest = tmp_path / "download"
    subprocess.run(
        [interpreter("3.12"), "-m", "pip", "download", "--no-deps", "--no-cache-dir", "--only-binary", ":all:"]
        + ["--index-url", stack.simple, "-d", str(dest), f"{SLOW_NAME}==0.1.0"],
        check=True,
        capture_output=True,
        env=isolated_pip_env(),
    )
    (wheel,) = dest.glob("*.whl")
    assert wheel.name == done["wheel"]
    assert hashlib.sha256(wheel.read_bytes()).hexdigest() == done["sha256"]
    with zipfile.ZipFile(wheel) as zf:
        assert zf.testzip() is None
        assert any(n.startswith("wheelyard_slow_demo") and n.endswith(".so") for n in zf.namelist())


# -- 1. a worker killed in the middle of a build ---------------------------------------------------


def test_killed_pool_process_is_requeued_at_once_and_built_once(
    make_stack: Any, slow_upstream: str, tmp_path: Path
) -> None:
    s = make_stack(db=20, WHEELYARD_UPSTREAM_INDEX=slow_upstream)
    worker, build_id = start_slow_build(s)

    # The pool process running the build: the worker's child with the sandbox (bubblewrap) under it.
    table = process_table()
    pools = [
        pid
        for pid, info in table.items()
        if info[0] == worker.pid and any(d[1] == "bwrap" for d in descendants(pid, table).values())
    ]
    assert len(pools) == 1, table
    sandbox = descendants(pools[0], table)
    assert any(info[1] in ("gcc", "cc1", "python3", "python", "sleep") for info in sandbox.values()), sandbox
    killed_at = time.monotonic()
    os.kill(pools[0], signal.SIGKILL)
    # --die-with-parent: the build's processes go with the pool process that ran them.
    wait_until(lambda: not still_running(sandbox), 15, "the killed build's processes to end")
    wait_until(lambda: no_process_left_in_cgroups(pools), 15, "the killed build's cgroups to empty")

    done = s.wait_done(build_id, timeout=240)
    assert done["status"] == "published", (done, s.log("worker-a"))
    assert done["runs"] == 2, done
    assert done["worker"].startswith("worker-a-")
    assert worker.poll() is None  # the worker itself lived on and started a new pool process
    assert "WorkerLostError" in s.log("worker-a") or "worker lost" in s.log("worker-a").lower()
    log = build_log(s, build_id)
    assert log.count(MARKER) == 1 and "wheelyard: published" in log  # the log is the second attempt's
    print(f"pool process killed -> published in {time.monotonic() - killed_at:.1f} s")
    assert_one_whole_wheel(s, done, tmp_path)


def test_lost_worker_job_goes_to_another_worker_after_the_visibility_timeout(
    make_stack: Any, slow_upstream: str, tmp_path: Path
) -> None:
    from builder.tasks import time_limits

    limits = time_limits(20)
    assert limits.wall < limits.soft < limits.hard < limits.visibility <= 60
    s = make_stack(db=21, WHEELYARD_UPSTREAM_INDEX=slow_upstream, WHEELYARD_BUILD_TIMEOUT="20")
    worker, build_id = start_slow_build(s)
    assert s.build(build_id)["worker"].startswith("worker-a-")

    # The machine is lost: the worker and all its processes die at once, nothing is acknowledged.
    tree = descendants(worker.pid, process_table())
    assert any(info[1] == "bwrap" for info in tree.values()), tree
    killed_at = time.monotonic()
    s.stop("worker-a", signal.SIGKILL)
    wait_until(lambda: not still_running(tree), 15, "the lost worker's build processes to end")
    pools = [pid for pid, info in tree.items() if info[0] == worker.pid]
    wait_until(lambda: no_process_left_in_cgroups(pools), 15, "the lost worker's build cgroups to empty")
    assert s.build(build_id)["status"] == "building"  # what the lost worker left behind

    s.start_worker("worker-b", TARGET)
    wait_until(
        lambda: (s.build(build_id)["worker"] or "").startswith("worker-b-"),
        limits.visibility + 3 * limits.restore_interval + 30,
        "the job to reach the surviving worker",
        interval=0.5,
    )
    redelivered = time.monotonic() - killed_at
    done = s.wait_done(build_id, timeout=240)
    assert done["status"] == "published", (done, s.log("worker-b"))
    assert done["runs"] >= 2, done
    print(f"worker lost -> redelivered after {redelivered:.1f} s -> published {time.monotonic() - killed_at:.1f} s")
    assert_one_whole_wheel(s, done, tmp_path)


# -- 2. Redis stopped and started again under a queue of builds ----------------------------------

PURE = ["iniconfig==2.0.0", "six==1.16.0", "toml==0.10.2", "idna==3.7", "packaging==24.1"]


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "private-redis", tcp=True)
    server.start()
    yield server
    server.stop()


def assert_redis_unavailable(response: requests.Response) -> None:
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["error"] == "redis-unavailable", body
    assert body["message"] and body["hint"], body
    assert "Traceback" not in response.text


def test_redis_outage_loses_no_accepted_build(
    private_redis: EmbeddedRedis, make_stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import server.embedded_redis

    s = make_stack(redis=private_redis.url, WHEELYARD_BUILD_TIMEOUT="60", WHEELYARD_WORKER_CONCURRENCY="2")
    s.start_index_and_api()
    s.start_worker("worker-pure", "py3-none-any")
    accepted = []
    for requirement in PURE:
        response = s.request(requirement, ["py3-none-any"], from_source=True)
        assert response.status_code == 202, response.text
        accepted.append(response.json()["builds"][0]["id"])
    wait_until(lambda: any(s.build(b)["status"] == "building" for b in accepted), 120, "a build to start", interval=0.1)

    outage = time.monotonic()
    port = private_redis.port
    private_redis.stop()  # SHUTDOWN: the append-only file has every accepted request
    assert_redis_unavailable(s.request("tomli==2.0.1", ["py3-none-any"]))
    assert_redis_unavailable(requests.get(f"{s.api}/api/builds/{accepted[0]}", timeout=60))
    health = requests.get(f"{s.api}/api/health", timeout=60)
    assert health.status_code == 503 and health.json()["checks"]["redis"] == "unavailable", health.text
    # The worker notices: its broker connection and its registration fail.
    wait_until(
        lambda: (
            "Connection to broker lost" in s.log("worker-pure") and "worker registration failed" in s.log("worker-pure")
        ),
        60,
        "the worker to notice the outage",
        interval=0.5,
    )

    monkeypatch.setattr(server.embedded_redis, "_free_port", lambda: port)
    private_redis.start()  # the same port and data directory
    print(f"Redis was away for {time.monotonic() - outage:.1f} s")

    # Every build accepted before ends, published; none is stuck or lost.
    for build_id in accepted:
        done = s.wait_done(build_id, timeout=180)
        assert done["status"] == "published", (done, s.log("worker-pure"))
        assert "wheelyard: published" in build_log(s, build_id)
    # The worker is back: registered again, and it takes new builds.
    wait_until(
        lambda: any(
            w.startswith("worker-pure-") for w in requests.get(f"{s.api}/api/workers", timeout=10).json()["workers"]
        ),
        60,
        "the worker's registration to come back",
    )
    after = s.request("tomli==2.0.1", ["py3-none-any"], from_source=True)
    assert after.status_code == 202, after.text
    assert s.wait_done(after.json()["builds"][0]["id"], timeout=120)["status"] == "published"
    assert redis.Redis.from_url(private_redis.url).zcard("wheelyard:builds") == len(PURE) + 1
    print(f"outage -> all builds done and a new one published in {time.monotonic() - outage:.1f} s")


# -- 3. the API token -------------------------------------------------------------------------------

TOKEN = "wy-test-token-5f0c1e9a7b"


def test_api_token_is_required_and_never_leaks(make_stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from server.cli import main

    s = make_stack(db=22, WHEELYARD_API_TOKEN=TOKEN)
    s.start_index_and_api()
    s.start_worker("worker-tok", "py3-none-any")
    client = redis.Redis.from_url(s.redis_url)

    def queued() -> tuple[int, int]:
        lists = sum(client.llen(k) for k in client.scan_iter("wheelyard.*") if client.type(k) == b"list")
        return int(client.zcard("wheelyard:builds")), lists

    before = queued()
    body = {"requirement": "iniconfig==2.0.0", "targets": ["py3-none-any"]}
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": TOKEN},
        {"Authorization": f"Bearer {TOKEN}x"},
    ):
        response = requests.post(f"{s.api}/api/builds", json=body, headers=headers, timeout=30)
        assert response.status_code == 401, (headers, response.text)
        payload = response.json()
        assert payload["error"] == "unauthorized" and payload["message"] and payload["hint"], payload
        assert "Traceback" not in response.text
    assert queued() == before

    response = requests.post(f"{s.api}/api/builds", json=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert response.status_code == 202, response.text

    # The CLI sends the token from WHEELYARD_API_TOKEN, and is refused without it.
    monkeypatch.delenv("WHEELYARD_API_TOKEN", raising=False)
    out, err = io.StringIO(), io.StringIO()
    assert main(["request", "six==1.16.0", "-t", "py3-none-any", "--api-url", s.api], stdout=out, stderr=err) == 1
    assert "[unauthorized]" in err.getvalue() and "Traceback" not in err.getvalue()
    monkeypatch.setenv("WHEELYARD_API_TOKEN", TOKEN)
    out, err = io.StringIO(), io.StringIO()
    code = main(["request", "six==1.16.0", "-t", "py3-none-any", "--wait", "--api-url", s.api], stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    assert s.wait_done(response.json()["builds"][0]["id"], timeout=120)["status"] in ("published", "mirrored")

    # Nowhere in the logs, the records, the build logs or the queues.
    for name in ("api", "worker-tok", "index"):
        assert TOKEN not in s.log(name), name
    assert "Uvicorn running" in s.log("api") or s.log("api")
    for key in client.scan_iter("*"):
        kind = client.type(key)
        if kind == b"string":
            values = [client.get(key) or b""]
        elif kind == b"list":
            values = client.lrange(key, 0, -1)
        elif kind == b"hash":
            values = list(client.hgetall(key).values())
        elif kind == b"zset":
            values = client.zrange(key, 0, -1)
        else:
            values = list(client.smembers(key)) if kind == b"set" else []
        assert not any(TOKEN.encode() in v for v in values), key
