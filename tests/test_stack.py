"""`wheelyard up` supervises its children: each one killed is started again, and a build in flight is
published once. The supervision's pauses are checked on a controlled clock; its restarts on real
processes, and on a real `wheelyard up` whose index, API, embedded Redis and worker are killed -9.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from server.supervise import Backoff, Supervised
from tests.conftest import die_with_parent, free_port, start_up, wait_until
from tests.test_config import write_toml
from tests.test_resilience import (  # noqa: F401 - slow_upstream is a fixture
    MARKER,
    SLOW_NAME,
    TARGET,
    assert_one_whole_wheel,
    descendants,
    process_table,
    slow_upstream,
    still_running,
)

ROOT = Path(__file__).resolve().parent.parent


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_child_that_keeps_ending_waits_longer_each_time_and_less_once_it_ran_well() -> None:
    clock, log = Clock(), io.StringIO()
    starts: list[float] = []
    running = [True]

    def start() -> None:
        starts.append(clock.now)
        running[0] = True

    child = Supervised("index", start, lambda: None if running[0] else 1, log, Backoff(1, 8, 60), clock)
    pauses = []
    for _ in range(5):
        running[0] = False
        child.check()  # the end is noticed now
        noticed = clock.now
        while running[0] is False:
            clock.now += 0.5
            child.check()
        pauses.append(starts[-1] - noticed)
    assert pauses == [1.0, 2.0, 4.0, 8.0, 8.0]
    clock.now += 61  # ran well for a minute: the next end starts from the first pause again
    running[0] = False
    child.check()
    last = log.getvalue().splitlines()[-1]
    assert last == "wheelyard: the index exited with status 1 after 61 s; starting it again in 1 s"
    assert child.restarts == 5


def test_a_killed_process_is_started_again_and_logged() -> None:
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        procs.append(subprocess.Popen(["sleep", "60"], preexec_fn=die_with_parent))

    log = io.StringIO()
    start()
    child = Supervised("worker", start, lambda: procs[-1].poll(), log, Backoff(first=0.1))
    try:
        os.kill(procs[0].pid, signal.SIGKILL)
        wait_until(lambda: child.check() or len(procs) == 2, 10, "the killed process to be started again")
        assert procs[1].poll() is None
        assert "the worker killed by SIGKILL after 0 s; starting it again in 0 s" in log.getvalue()
        assert "the worker started again (restart 1)" in log.getvalue()
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def test_a_start_that_fails_is_tried_again() -> None:
    from builder.errors import RedisUnavailable

    attempts: list[int] = []

    def start() -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise RedisUnavailable("redis-server is not on PATH", "install it")

    clock, log = Clock(), io.StringIO()
    child = Supervised("embedded Redis", start, lambda: 0 if not attempts else None, log, Backoff(first=1), clock)
    for _ in range(20):
        clock.now += 1
        child.check()
    assert len(attempts) == 3 and child.restarts == 1
    assert "the embedded Redis did not start (redis-server is not on PATH)" in log.getvalue()


def test_a_child_that_never_stays_up_is_given_up_on_saying_why() -> None:
    clock, log, out = Clock(), io.StringIO(), io.StringIO()
    starts: list[float] = []

    def start() -> None:
        starts.append(clock.now)

    child = Supervised(
        "worker",
        start,
        lambda: 1,  # ends at once, every time
        log,
        Backoff(first=1, longest=8, stable_after=60, give_up_after=3),
        clock,
        last_words=lambda: "error: this worker cannot build cp312-manylinux_aarch64 [target-not-buildable]",
        out=out,
    )
    for _ in range(200):
        clock.now += 0.5
        child.check()
    assert len(starts) == 3  # the three restarts; the fourth end gives up
    assert child.given_up is not None
    why = (
        "the worker is not started again: it ended 4 times in a row, each within 60 s of its start "
        "(last: exited with status 1 after 0 s); it said: error: this worker cannot build "
        "cp312-manylinux_aarch64 [target-not-buildable]"
    )
    assert child.given_up == why
    assert log.getvalue().splitlines()[-1] == f"wheelyard: {why}; the rest of the stack runs on"
    assert out.getvalue() == f"wheelyard: {why}\n"


# -- a real `wheelyard up` ----------------------------------------------------------------------
@pytest.fixture
def short_data_dir() -> Iterator[Path]:
    """The embedded Redis's unix socket path must fit in 108 bytes: a short data directory."""
    path = Path(tempfile.mkdtemp(prefix="wy-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _children(up: subprocess.Popen[bytes]) -> dict[str, int]:
    """index, api, worker and redis-server: the pids of `up`'s children by what they run."""
    found = {}
    for pid, info in process_table().items():
        if info[0] != up.pid or info[3] in ("Z", "X"):
            continue
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if info[1] == "redis-server":
            found["redis"] = pid
        elif argv[1:3] == [b"-m", b"server.cli"]:
            found[argv[3].decode()] = pid
    return found


def _healthy(api: str) -> bool:
    try:
        return requests.get(f"{api}/api/health", timeout=3).status_code == 200
    except requests.RequestException:
        return False


def _has_worker(api: str) -> bool:
    try:
        return bool(requests.get(f"{api}/api/workers", timeout=3).json()["workers"])
    except (requests.RequestException, ValueError, KeyError):
        return False


@pytest.mark.slow
def test_up_starts_again_each_child_killed_and_publishes_the_build_in_flight_once(
    slow_upstream: str,  # noqa: F811 - the fixture imported above
    short_data_dir: Path,
    tmp_path: Path,
) -> None:
    from builder.tasks import time_limits

    api_port, index_port = free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}"
    config = write_toml(
        tmp_path / "wheelyard.toml",
        # A short build time limit keeps the visibility timeout (when a lost job is handed out again) short.
        {"data_dir": short_data_dir, "upstream_index": slow_upstream, "api_port": api_port, "index_port": index_port}
        | {"limits.wall_seconds": 20},
    )
    log_path = tmp_path / "up.log"
    up = start_up(config, "--targets", TARGET, log=log_path)

    def up_log() -> str:
        return log_path.read_text(errors="replace")

    def replaced(name: str, old: int) -> bool:
        assert up.poll() is None, up_log()
        pid = _children(up).get(name)
        return pid is not None and pid != old and _healthy(api)

    try:
        wait_until(lambda: _healthy(api) and _has_worker(api), 180, f"`wheelyard up` to be ready\n{up_log()}")
        for name in ("index", "api", "redis"):
            old = _children(up)[name]
            os.kill(old, signal.SIGKILL)
            wait_until(lambda name=name, old=old: replaced(name, old), 90, f"the {name} to be started again")
        for what in ("index", "API", "embedded Redis"):
            assert f"wheelyard: the {what} killed by SIGKILL" in up_log(), up_log()
            # Written once the supervisor sees the new child run: poll for it, do not race it.
            line = f"wheelyard: the {what} started again (restart 1)"
            wait_until(lambda line=line: line in up_log(), 60, f"{line!r} in the log\n{up_log()}")

        # The worker's main process, mid-build: its pool process and the sandbox go with it.
        wait_until(lambda: _has_worker(api), 60, "the worker to register again after Redis came back")
        response = requests.post(f"{api}/api/builds", json={"requirement": f"{SLOW_NAME}==0.1.0", "targets": [TARGET]})
        assert response.status_code == 202, response.text
        build_id = response.json()["builds"][0]["id"]
        log_url = f"{api}/api/builds/{build_id}/log"
        wait_until(lambda: MARKER in requests.get(log_url, timeout=10).text, 180, "the build to compile", interval=0.1)
        worker = _children(up)["worker"]
        tree = descendants(worker, process_table())
        assert any(info[1] == "bwrap" for info in tree.values()), tree
        killed_at = time.monotonic()
        os.kill(worker, signal.SIGKILL)
        wait_until(lambda: not still_running(tree), 15, "the killed worker's pool process and build to end")
        wait_until(lambda: replaced("worker", worker), 90, "the worker to be started again")

        limits = time_limits(20)
        done = wait_until(
            lambda: (
                (b := requests.get(f"{api}/api/builds/{build_id}", timeout=10).json())["status"]
                in ("published", "failed")
                and b
            ),
            limits.visibility + 3 * limits.restore_interval + 240,
            "the build in flight to be built again",
            interval=0.5,
        )
        assert done["status"] == "published", (done, up_log())
        assert done["runs"] >= 2, done
        assert up.poll() is None
        print(f"worker's main process killed mid-build -> published in {time.monotonic() - killed_at:.1f} s")

        class Published:  # what assert_one_whole_wheel reads of a stack
            simple = f"http://127.0.0.1:{index_port}/simple/"
            data_dir = short_data_dir

        assert_one_whole_wheel(Published, done, tmp_path)  # type: ignore[arg-type]
    finally:
        os.killpg(up.pid, signal.SIGTERM)
        up.wait(timeout=90)
