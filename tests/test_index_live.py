"""The index under load and change, for real: publishing while clients read, yanking through the
CLI and the API, hundreds of slow sockets while pip installs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import Stack, isolated_pip_env
from tests.index_parts import SERVERS, dist_wheel, parse_links, upload_file
from tests.test_index import Index, running_index


@pytest.fixture(params=SERVERS)
def live_index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Index]:
    with running_index(tmp_path / "data", WHEELYARD_INDEX_SERVER=request.param) as index:
        yield index


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", *args, "--no-cache-dir"],
        env=isolated_pip_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


class Reader(threading.Thread):
    """Reads one project page over and over (HTML and JSON in turn); checks each whole, and
    fetches every file the first time a page names it."""

    def __init__(self, index: Index, project: str, stop: threading.Event, number: int) -> None:
        super().__init__(daemon=True)
        self.index, self.project, self.stop, self.number = index, project, stop, number
        self.problems: list[str] = []
        self.pages = 0
        self.seen: set[str] = set()

    def run(self) -> None:
        session = requests.Session()
        url = f"{self.index.url}/simple/{self.project}/"
        while not self.stop.is_set():
            as_json = (self.pages + self.number) % 2 == 0
            headers = {"Accept": "application/vnd.pypi.simple.v1+json"} if as_json else {}
            response = session.get(url, headers=headers, timeout=30)
            self.pages += 1
            if response.status_code != 200:
                self.problems.append(f"page answered {response.status_code}")
                continue
            try:
                names = self._names(response.text, as_json)
            except ValueError as exc:
                self.problems.append(f"broken page: {exc}")
                continue
            for name in sorted(set(names) - self.seen):
                head = session.head(f"{self.index.url}/packages/{name}", timeout=30)
                if head.status_code != 200:
                    self.problems.append(f"{name} is linked but answers {head.status_code}")
                self.seen.add(name)

    @staticmethod
    def _names(text: str, as_json: bool) -> list[str]:
        if as_json:
            return [f["filename"] for f in json.loads(text)["files"]]
        if not text.endswith("</html>\n"):
            raise ValueError("the HTML page is cut short")
        return [str(link["href"]).split("#")[0].rsplit("/", 1)[1] for link in parse_links(text).links]


def test_publishing_while_50_clients_read_one_page(live_index: Index, tmp_path: Path) -> None:
    first = dist_wheel(tmp_path / "dist", "busy", "0.1")
    assert upload_file(live_index, first).status_code == 200
    wheels = [dist_wheel(tmp_path / "dist", "busy", f"1.{i}", payload=os.urandom(2000)) for i in range(40)]
    stop = threading.Event()
    readers = [Reader(live_index, "busy", stop, i) for i in range(50)]
    for reader in readers:
        reader.start()
    statuses: list[int] = []
    lock = threading.Lock()

    def publish(batch: list[Path]) -> None:
        for wheel in batch:
            status = upload_file(live_index, wheel).status_code
            with lock:
                statuses.append(status)

    publishers = [threading.Thread(target=publish, args=(wheels[i::8],)) for i in range(8)]
    for t in publishers:
        t.start()
    for t in publishers:
        t.join(timeout=300)
    stop.set()
    for reader in readers:
        reader.join(timeout=60)
    assert statuses == [200] * 40
    problems = [p for r in readers for p in r.problems]
    assert problems == [], problems[:10]
    assert sum(r.pages for r in readers) > 200
    final = requests.get(f"{live_index.url}/simple/busy/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    assert sorted(f["filename"] for f in final.json()["files"]) == sorted([first.name] + [w.name for w in wheels])
    assert final.json()["versions"][-1] == "1.39"


class SlowClients:
    """Sockets that send a request's headers one line every second and never finish them,
    and uploads whose body trickles in the same way."""

    def __init__(self, port: int, readers: int, uploaders: int) -> None:
        self.sockets: list[socket.socket] = []
        for i in range(readers + uploaders):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            if i < readers:
                sock.sendall(b"GET /simple/lib/ HTTP/1.1\r\nHost: index\r\n")
            else:
                sock.sendall(
                    b"POST / HTTP/1.1\r\nHost: index\r\nContent-Type: multipart/form-data; boundary=x\r\n"
                    b"Content-Length: 10000000\r\n\r\n--x\r\n"
                )
            self.sockets.append(sock)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def _trickle(self) -> None:
        while not self.stop.wait(1.0):
            for sock in self.sockets:
                try:
                    sock.send(b"X-Slow: 1\r\n")
                except OSError:
                    continue

    def open_count(self) -> int:
        return len(self.sockets)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        for sock in self.sockets:
            sock.close()


def test_500_slow_sockets_do_not_stop_pip_or_uploads(live_index: Index, tmp_path: Path) -> None:
    for version in ("1.0", "2.0"):
        assert upload_file(live_index, dist_wheel(tmp_path / "dist", "lib", version)).status_code == 200
    slow = SlowClients(live_index.port, readers=400, uploaders=100)
    try:
        started = time.monotonic()
        done = _pip(
            "install", "--index-url", live_index.url + "/simple/", "--target", str(tmp_path / "site"), "lib",
        )  # fmt: skip
        took = time.monotonic() - started
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "site" / "lib" / "__init__.py").read_text() == "VALUE = '2.0'\n"
        assert took < 60, f"pip took {took:.1f} s behind slow sockets"
        fresh = dist_wheel(tmp_path / "dist", "lib", "3.0")
        assert upload_file(live_index, fresh).status_code == 200  # the upload endpoint still takes uploads
        assert fresh.name in requests.get(live_index.url + "/simple/lib/", timeout=10).text
    finally:
        slow.close()


# -- yanking, through the CLI and the API -----------------------------------------------------------


def _cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args], env=stack.env, capture_output=True, text=True, timeout=120
    )


def test_yank_then_install(make_stack: Any, tmp_path: Path) -> None:
    stack: Stack = make_stack(WHEELYARD_API_TOKEN="test-token")
    stack.start_index_and_api()
    index = Index(f"http://127.0.0.1:{stack.index_port}", stack.index_port, stack.data_dir, stack.procs["index"])
    for version in ("1.0", "2.0"):
        wheel = dist_wheel(tmp_path / "dist", "lib", version)
        response = requests.post(
            index.url + "/",
            data={":action": "file_upload", "protocol_version": "1"},
            files={"content": (wheel.name, wheel.read_bytes())},
            auth=("wheelyard", stack.password),
            timeout=60,
        )
        assert response.status_code == 200, response.text
    refused = requests.post(f"{stack.api}/api/index/yank", json={"name": "lib", "version": "2.0"}, timeout=30)
    assert refused.status_code == 401  # the API token is needed
    yanked = _cli(stack, "yank", "lib", "2.0", "--reason", "breaks everything")
    assert yanked.returncode == 0, yanked.stderr
    assert "yanked lib 2.0: lib-2.0-py3-none-any.whl" in yanked.stdout
    missing = _cli(stack, "yank", "lib", "9.9")
    assert missing.returncode == 1 and "no files of lib 9.9" in missing.stderr and "Traceback" not in missing.stderr

    page = requests.get(f"{stack.simple}lib/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}, timeout=10)
    assert [f["yanked"] for f in page.json()["files"]] == [False, "breaks everything"]
    assert 'data-yanked="breaks everything"' in requests.get(f"{stack.simple}lib/", timeout=10).text

    simple = stack.simple
    latest = _pip("install", "--index-url", simple, "--target", str(tmp_path / "a"), "lib")
    assert latest.returncode == 0, latest.stderr
    assert (tmp_path / "a" / "lib" / "__init__.py").read_text() == "VALUE = '1.0'\n"
    pinned = _pip("install", "--index-url", simple, "--target", str(tmp_path / "b"), "lib==2.0")
    assert pinned.returncode == 0, pinned.stderr
    assert (tmp_path / "b" / "lib" / "__init__.py").read_text() == "VALUE = '2.0'\n"
    assert "yanked" in pinned.stderr and "breaks everything" in pinned.stderr

    undone = _cli(stack, "yank", "lib", "2.0", "--undo")
    assert undone.returncode == 0, undone.stderr
    again = _pip("install", "--index-url", simple, "--target", str(tmp_path / "c"), "lib")
    assert (tmp_path / "c" / "lib" / "__init__.py").read_text() == "VALUE = '2.0'\n", again.stderr
