"""The embedded server's processes, for real: one per CPU accepting on one inherited listening
socket, sharing one access log whose lines are never cut; a serving process that dies stops the
index (its supervisor, `wheelyard up` or a service manager, starts it again); a second index on
the same port is refused instead of sharing it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from server.index.embedded import processes_for
from tests.conftest import wait_until
from tests.index_parts import access_log, dist_wheel, upload_file
from tests.test_index import Index, running_index

_LINE = re.compile(r"^\S+ \d{3} \d+ (GET|HEAD|POST) \S+$")


def _serving_processes(index: Index) -> list[int]:
    """The index process's forked serving processes (same command line, its children)."""
    own = Path(f"/proc/{index.process.pid}/cmdline").read_bytes()
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent == index.process.pid and Path(f"/proc/{pid}/cmdline").read_bytes() == own:
                found.append(int(pid))
        except (OSError, IndexError, ValueError):
            continue
    return found


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Index]:
    if processes_for() < 2:
        pytest.skip("one CPU: the embedded server runs one process")
    with running_index(tmp_path / "data", WHEELYARD_INDEX_SERVER="embedded") as index:
        yield index


def test_one_process_per_cpu_shares_the_port_and_the_access_log(embedded: Index, tmp_path: Path) -> None:
    assert len(_serving_processes(embedded)) == processes_for() - 1
    assert upload_file(embedded, dist_wheel(tmp_path / "dist", "many", "1.0")).status_code == 200
    paths = ["/simple/", "/simple/many/", "/packages/many-1.0-py3-none-any.whl", "/simple/absent/"]
    errors: list[str] = []

    def client() -> None:
        with requests.Session() as session:  # a connection of its own: the kernel spreads them
            for _ in range(50):
                for path in paths:
                    status = session.get(embedded.url + path, timeout=30).status_code
                    if status != (404 if path == "/simple/absent/" else 200):
                        errors.append(f"{path}: {status}")

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    wanted = 8 * 50 * len(paths)

    def logged() -> list[str] | None:
        lines = [line for line in access_log(embedded).splitlines() if " GET " in line]
        return lines if len(lines) >= wanted else None

    lines = wait_until(logged, 20, f"{wanted} requests in the access log")
    assert [line for line in access_log(embedded).splitlines() if not _LINE.match(line)] == []
    assert len(lines) == wanted


def test_a_serving_process_that_dies_stops_the_index(embedded: Index) -> None:
    worker = _serving_processes(embedded)[0]
    os.kill(worker, signal.SIGKILL)
    wait_until(lambda: embedded.process.poll() is not None, 30, "the index to stop")
    assert embedded.process.returncode == 1


def test_the_serving_processes_end_with_the_index(embedded: Index) -> None:
    workers = _serving_processes(embedded)
    embedded.process.send_signal(signal.SIGTERM)
    embedded.process.wait(timeout=30)
    assert embedded.process.returncode == 0
    wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers), 10, "the serving processes to end")


def test_a_second_index_on_the_same_port_is_refused_and_takes_no_requests(embedded: Index, tmp_path: Path) -> None:
    # With SO_REUSEPORT a second server would bind as well, and the kernel would hand it part of
    # the connections: clients would see another data directory's pages now and then.
    assert upload_file(embedded, dist_wheel(tmp_path / "dist", "only-here", "1.0")).status_code == 200
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHEELYARD_")}
    env.update(
        WHEELYARD_DATA_DIR=str(tmp_path / "other"),
        WHEELYARD_INDEX_PORT=str(embedded.port),
        WHEELYARD_INDEX_SERVER="embedded",
        WHEELYARD_LOG_FORMAT="text",
    )
    second = subprocess.run(
        [sys.executable, "-m", "server.index"], env=env, capture_output=True, text=True, timeout=120
    )
    assert second.returncode == 1
    assert f"127.0.0.1:{embedded.port} is in use by another process [port-in-use]" in second.stderr
    assert "Traceback" not in second.stderr + second.stdout
    with requests.Session() as session:
        for _ in range(40):
            page = session.get(embedded.url + "/simple/only-here/", timeout=30, headers={"Connection": "close"})
            assert page.status_code == 200 and "only_here-1.0-py3-none-any.whl" in page.text
