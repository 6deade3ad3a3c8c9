"""Shared fixtures: the real Redis, real service processes, isolated pip clients.

Tests talk to the Redis on 127.0.0.1:6379 (``.ci/run`` starts one if none answers), in a
database of their own that is emptied at the start of the session.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

REDIS_SERVER = os.environ.get("WHEELYARD_TEST_REDIS", "redis://127.0.0.1:6379")
PYENV = Path(os.environ.get("PYENV_ROOT", "/root/.pyenv")) / "versions"


def interpreter(version: str) -> str:
    """Path of the CPython ``version`` (e.g. "3.12") under pyenv."""
    for candidate in sorted(PYENV.glob(f"{version}.*")):
        python = candidate / "bin" / "python3"
        if python.exists():
            return str(python)
    found = shutil.which(f"python{version}")
    if found:
        return found
    pytest.skip(f"no CPython {version} on this machine")


def die_with_parent() -> None:
    """In a child: its own process group, and SIGTERM when the test process dies (no orphans)."""
    os.setsid()
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start_up(
    config: Path, *args: str, log: Path, err: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`wheelyard up` with ``config`` and ``args``, from the repository root, with pip isolated from
    this machine's configuration; its output to ``log`` (stderr to ``err`` if given, else to
    ``log`` too). It dies with the test process."""
    return subprocess.Popen(
        [sys.executable, "-m", "server.cli", "--config", str(config), "up", *args],
        env=isolated_pip_env() if env is None else env,
        cwd=Path(__file__).resolve().parent.parent,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT if err is None else err.open("wb"),
        stdin=subprocess.DEVNULL,
        preexec_fn=die_with_parent,
    )


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port free now and not handed out before in this session: the kernel may give a just
    released port again, and two servers of one stack (chosen before either binds) must differ."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def isolated_pip_env(**extra: str) -> dict[str, str]:
    """An environment in which pip and uv see no configuration of this machine."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "WHEELYARD_"))}
    env.update(
        PIP_CONFIG_FILE=os.devnull,
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        UV_NO_CONFIG="1",
        PIP_NO_INPUT="1",
    )
    env.update(extra)
    return env


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll a real condition until it holds; fail with ``what`` when it never does."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with RedisDatabases(REDIS_SERVER) as databases:
        yield databases.take()


class RedisDatabases:
    """Hands out databases of the shared test Redis, each emptied and held under a lease key in
    database 0, so that test sessions running side by side never share (or flush) one."""

    def __init__(self, server: str) -> None:
        self.server = server.rstrip("/")
        self.admin = redis.Redis.from_url(f"{self.server}/0")
        self.token = f"{os.getpid()}-{time.monotonic_ns()}"
        self.held: list[int] = []

    def __enter__(self) -> RedisDatabases:
        try:
            self.admin.ping()
        except redis.ConnectionError:
            pytest.fail(f"no Redis at {self.server}: start one (`.ci/run` does)")
        return self

    def take(self) -> str:
        count = int(self.admin.config_get("databases").get("databases", 16))
        for db in range(1, count):
            if self._lease(f"wheelyard-test:lease:{db}"):
                self.held.append(db)
                url = f"{self.server}/{db}"
                redis.Redis.from_url(url).flushdb()
                return url
        pytest.fail(f"every database of {self.server} is leased to a running test session")

    def _lease(self, key: str) -> bool:
        """Take ``key`` if free, or if its holder (a test session on this machine, its pid in the
        token) has died without giving it back: an interrupted run must not hold databases for hours."""
        if self.admin.set(key, self.token, nx=True, ex=4 * 3600):
            return True
        holder = self.admin.get(key)
        pid = holder.decode().split("-", 1)[0] if holder else ""
        if not pid.isdigit() or Path(f"/proc/{pid}").exists():
            return False
        with self.admin.pipeline() as pipe:
            try:
                pipe.watch(key)
                if pipe.get(key) != holder:
                    return False
                pipe.multi()
                pipe.set(key, self.token, ex=4 * 3600)
                pipe.execute()
            except redis.WatchError:
                return False  # another session took it first
        return True

    def __exit__(self, *exc: object) -> None:
        for db in self.held:
            key = f"wheelyard-test:lease:{db}"
            if self.admin.get(key) == self.token.encode():
                self.admin.delete(key)


class Stack:
    """wheelyard's processes, started as a deployment would: index, API, workers."""

    def __init__(self, root: Path, redis_url: str, **settings: str) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.redis_url = redis_url
        self.index_port = free_port()
        self.api_port = free_port()
        self.password = "test-upload-secret"
        self.env = isolated_pip_env(
            WHEELYARD_DATA_DIR=str(self.data_dir),
            WHEELYARD_REDIS_URL=redis_url,
            WHEELYARD_INDEX_PORT=str(self.index_port),
            WHEELYARD_INDEX_URL=f"http://127.0.0.1:{self.index_port}",
            WHEELYARD_INDEX_PASSWORD=self.password,
            WHEELYARD_API_PORT=str(self.api_port),
            WHEELYARD_API_URL=f"http://127.0.0.1:{self.api_port}",
            PYTHONUNBUFFERED="1",
        )
        self.env.update(settings)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def simple(self) -> str:
        return f"http://127.0.0.1:{self.index_port}/simple/"

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.root / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "server.cli", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start_index_and_api(self) -> None:
        self.start("index", "index")
        self._wait_http(f"http://127.0.0.1:{self.index_port}/health", "index")
        self.start("api", "api")
        self._wait_http(f"{self.api}/api/health", "api")

    def start_worker(self, name: str, targets: str) -> subprocess.Popen[bytes]:
        proc = self.start(name, "worker", "--targets", targets, "--name", f"{name}-{os.getpid()}@test")
        wait_until(
            lambda: self._worker_listed(name) or proc.poll() is not None,
            120,
            f"worker {name} to register",
        )
        assert proc.poll() is None, self.log(name)
        return proc

    def _worker_listed(self, name: str) -> bool:
        workers = requests.get(f"{self.api}/api/workers", timeout=10).json()["workers"]
        return any(w.startswith(f"{name}-") for w in workers)

    def _wait_http(self, url: str, name: str) -> None:
        def up() -> bool:
            assert self.procs[name].poll() is None, self.log(name)
            try:
                return requests.get(url, timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(up, 60, f"{name} at {url}")

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    # -- API helpers ---------------------------------------------------------------------------
    def request(self, requirement: str, targets: list[str], **extra: Any) -> requests.Response:
        return requests.post(
            f"{self.api}/api/builds",
            json={"requirement": requirement, "targets": targets, **extra},
            timeout=120,
        )

    def build(self, build_id: str) -> dict[str, Any]:
        response = requests.get(f"{self.api}/api/builds/{build_id}", timeout=30)
        response.raise_for_status()
        return dict(response.json())

    def wait_done(self, build_id: str, timeout: float = 600) -> dict[str, Any]:
        """The build once it is finished, or waits for a capability no live worker has (it rests there)."""

        def done() -> dict[str, Any] | None:
            b = self.build(build_id)
            return b if b["status"] in ("published", "mirrored", "failed", "waiting-for-capability") else None

        return dict(wait_until(done, timeout, f"build {build_id} to finish", interval=0.5))


@pytest.fixture
def make_stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Any]:
    """Stacks for one test. ``db`` asks for a Redis database of the stack's own (any value: the
    number only says "separate"; a free one is leased), so its queues and records start empty.
    ``redis`` runs the stack on another Redis (a URL), e.g. a private ``EmbeddedRedis`` a test stops."""
    stacks: list[Stack] = []
    with RedisDatabases(REDIS_SERVER) as databases:

        def make(db: int | None = None, *, redis: str | None = None, **settings: str) -> Stack:
            url = redis if redis is not None else redis_url if db is None else databases.take()
            stack = Stack(tmp_path_factory.mktemp("stack"), url, **settings)
            stacks.append(stack)
            return stack

        yield make
        for stack in stacks:
            stack.stop_all()


def make_venv(python: str, path: Path) -> Path:
    """A fresh virtual environment of ``python`` with the real pip in it."""
    subprocess.run([python, "-m", "venv", str(path)], check=True, env=isolated_pip_env())
    return path / "bin" / "python"


def pip_install_from_index(simple_url: str, version: str, tmp: Path, *args: str) -> tuple[Path, dict[str, str]]:
    """A fresh venv of CPython ``version`` installs ``args`` (requirements, ``-r FILE``, options) with the
    real pip, from the index only and binary only; returns the venv's python and, per installed
    project, the URL its wheel came from."""
    import json

    python = make_venv(interpreter(version), tmp / f"venv{version}")
    report = tmp / f"report{version}.json"
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-cache-dir", "--index-url", simple_url]
        + ["--only-binary", ":all:", "--report", str(report), *args],
        env=isolated_pip_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:  # what the index served, beside what pip said of it
        pages = {url: requests.get(url, timeout=30) for url in _pages_named(simple_url, args)}
        shown = "\n".join(f"{url}: HTTP {r.status_code}\n{r.text[:3000]}" for url, r in pages.items())
        raise AssertionError(f"{result.stdout}{result.stderr}\n-- the index served --\n{shown}")
    installed = json.loads(report.read_text())["install"]
    return python, {str(i["metadata"]["name"]).lower(): str(i["download_info"]["url"]) for i in installed}


def _pages_named(simple_url: str, args: tuple[str, ...]) -> list[str]:
    """The index's root page and the project page of each plain requirement in ``args``."""
    import re

    names = [re.split(r"[=<>!~\[; ]", a, maxsplit=1)[0] for a in args if not a.startswith("-")]
    return [simple_url] + [f"{simple_url}{n.lower()}/" for n in names if n]


def make_sdist(
    root: Path, name: str, version: str, files: dict[str, str], dest: Path, zeros: dict[str, int] | None = None
) -> Path:
    """A real sdist (``NAME-VERSION.tar.gz`` in ``dest``) of the project ``files`` describe;
    ``zeros`` adds files of that many zero bytes (sparse on disk; gzip makes them tiny)."""
    import tarfile

    project = root / f"{name.replace('-', '_')}-{version}"
    for rel, text in files.items():
        path = project / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.lstrip())
    for rel, size in (zeros or {}).items():
        path = project / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:
            fh.truncate(size)
    (project / "PKG-INFO").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / f"{project.name}.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(project, arcname=project.name)
    return archive


@contextlib.contextmanager
def upstream_index(packages: Path) -> Iterator[str]:
    """A pypiserver serving the sdists in ``packages`` that redirects every other project to PyPI,
    as a devpi or Artifactory in front of PyPI would; yields its simple URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pypiserver", "run", "-p", str(port), "-i", "127.0.0.1", "-a", ".", "-P", "."]
        + ["--hash-algo", "sha256", "--fallback-url", "https://pypi.org/simple/", str(packages)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=die_with_parent,
    )

    def up() -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_until(up, 30, "the local upstream index")
        yield f"http://127.0.0.1:{port}/simple/"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def local_upstream(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """An upstream index of the test's own sdists (put them in the yielded directory) that
    redirects every other project to PyPI, as a devpi or Artifactory in front of PyPI would."""
    packages = tmp_path / "upstream"
    packages.mkdir()
    with upstream_index(packages) as url:
        yield packages, url
