"""What the index benchmarks share: a corpus of real-sized wheels, and the servers to compare.

The corpus (made once, kept in ``bench/.cache/index-corpus/``): 4,500 valid wheel files over 300
projects, one of them (``big-project``) with 500; sizes log-uniform between 20 kB and 1 MB of
incompressible payload. Projects ``dep-000`` .. ``dep-019`` each require two of
``lib-020`` .. ``lib-059``: ``RESOLVE_SET`` is the 20-package set the resolve benchmark asks for.

Servers, each on a free port over the same files: ``wheelyard index`` with the embedded
server and with nginx; pypiserver's default (``simple-dir`` backend) and its best
configuration (``--backend cached-dir --server gunicorn``, in a venv of its own with gunicorn
and watchdog); and a plain static server (nginx with a bare ``root``) of wheelyard's page tree.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.index_parts import dist_wheel  # noqa: E402

CACHE = ROOT / "bench" / ".cache"
CORPUS = CACHE / "index-corpus"
BIG, BIG_FILES, PROJECTS, FILES = "big-project", 500, 300, 4500
RESOLVE_SET = [f"dep-{i:03d}" for i in range(20)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def project_names() -> list[str]:
    names = [BIG] + [f"dep-{i:03d}" for i in range(20)] + [f"lib-{i:03d}" for i in range(20, 60)]
    return names + [f"proj-{i:03d}" for i in range(len(names), PROJECTS)]


def requirements_of(name: str) -> list[str]:
    if name.startswith("dep-"):
        i = int(name[4:])
        return [f"lib-{20 + 2 * i:03d}>=1.0", f"lib-{21 + 2 * i:03d}>=1.0"]
    return []


def write_wheel(directory: Path, name: str, version: str, size: int, rng: random.Random) -> Path:
    return dist_wheel(
        directory,
        name,
        version,
        requires_python=">=3.8",
        requires=tuple(requirements_of(name)),
        payload=rng.randbytes(size),
        compression=zipfile.ZIP_STORED,
    )


def corpus() -> Path:
    """The corpus directory, made on first use."""
    done = CORPUS / ".complete"
    if done.exists():
        return CORPUS
    shutil.rmtree(CORPUS, ignore_errors=True)
    CORPUS.mkdir(parents=True)
    rng = random.Random(691)
    names = project_names()
    per_project = {BIG: BIG_FILES}
    rest = FILES - BIG_FILES
    for i, name in enumerate(names[1:]):
        per_project[name] = rest // (PROJECTS - 1) + (1 if i < rest % (PROJECTS - 1) else 0)
    started = time.perf_counter()
    for name, count in per_project.items():
        for n in range(count):
            size = int(math.exp(rng.uniform(math.log(20_000), math.log(1_000_000))))
            write_wheel(CORPUS, name, f"1.{n}", size, rng)
    done.write_text("")
    total = sum(p.stat().st_size for p in CORPUS.glob("*.whl"))
    print(f"corpus: {FILES} wheels, {total / 1e6:.0f} MB, made in {time.perf_counter() - started:.0f} s", flush=True)
    return CORPUS


def fill_data_dir(data_dir: Path) -> None:
    """A wheelyard data directory holding the corpus (hard links) and its pages."""
    from server.index.site import IndexSite

    wheels = data_dir / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    for path in corpus().glob("*.whl"):
        target = wheels / path.name
        if not target.exists():
            os.link(path, target)
    started = time.perf_counter()
    report = IndexSite(data_dir).rebuild()
    print(
        f"wheelyard reindex-pages: {report.projects} projects, {report.files} files "
        f"({report.hashed} hashed) in {time.perf_counter() - started:.2f} s",
        flush=True,
    )


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server for {url} exited with {proc.returncode}")
        try:
            if requests.get(url, timeout=30).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout} s")


# The session of each server started here, by its base URL: its processes' CPU time is read from /proc.
_SESSIONS: dict[str, int] = {}


def server_cpu_seconds(base: str) -> float:
    """User + system CPU time so far of every live process of the server at ``base`` (its session)."""
    session, ticks = _SESSIONS[base], 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # ended meanwhile
        if int(fields[3]) == session:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _start(argv: list[str], env: dict[str, str] | None, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
    )


@contextlib.contextmanager
def wheelyard_index(data_dir: Path, server: str, **extra: str) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHEELYARD_")}
    env.update(
        WHEELYARD_DATA_DIR=str(data_dir),
        WHEELYARD_INDEX_PORT=str(port),
        WHEELYARD_INDEX_SERVER=server,
        WHEELYARD_INDEX_PASSWORD="bench-upload-secret",
        WHEELYARD_API_URL=f"http://127.0.0.1:{free_port()}",  # no API: demand reports are dropped
        **extra,
    )
    proc = _start([sys.executable, "-m", "server.index"], env, data_dir.parent / f"index-{server}.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc)
        yield _served(port, proc)
    finally:
        _stop(proc)


def _served(port: int, proc: subprocess.Popen[bytes]) -> str:
    base = f"http://127.0.0.1:{port}"
    _SESSIONS[base] = proc.pid  # started with start_new_session: the session id is its pid
    return base


def pypiserver_venv() -> Path:
    """A venv with pypiserver, gunicorn and watchdog (what its best configuration needs)."""
    venv = CACHE / "venv-pypiserver"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        env = dict(os.environ, PIP_CONFIG_FILE=os.devnull)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "pypiserver", "gunicorn", "watchdog", "passlib"],
            check=True,
            env=env,
        )
    return python


@contextlib.contextmanager
def pypiserver(files: Path, best: bool, log_dir: Path) -> Iterator[str]:
    port = free_port()
    python = pypiserver_venv() if best else Path(sys.executable)
    backend = ["--backend", "cached-dir", "--server", "gunicorn"] if best else ["--backend", "simple-dir"]
    argv = [str(python), "-m", "pypiserver", "run", "-p", str(port), "-i", "127.0.0.1", "-a", ".", "-P", "."]
    argv += ["--hash-algo", "sha256", "--disable-fallback", *backend, str(files)]
    proc = _start(argv, None, log_dir / f"pypiserver-{'best' if best else 'default'}.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc, timeout=300)
        yield _served(port, proc)
    finally:
        _stop(proc)


@contextlib.contextmanager
def plain_static(site: Path, run_dir: Path) -> Iterator[str]:
    """nginx with a bare root over wheelyard's page tree: the floor any index can reach."""
    port = free_port()
    run_dir.mkdir(parents=True, exist_ok=True)
    user = "user root;" if os.geteuid() == 0 else ""
    conf = run_dir / "plain.conf"
    conf.write_text(
        f"""{user}
worker_processes auto; daemon off; pid {run_dir}/plain.pid; error_log {run_dir}/plain-error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off; sendfile on; tcp_nopush on; keepalive_requests 100000;
    client_body_temp_path {run_dir}/b; proxy_temp_path {run_dir}/p; fastcgi_temp_path {run_dir}/f;
    uwsgi_temp_path {run_dir}/u; scgi_temp_path {run_dir}/s;
    types {{ text/html html; }} default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port} backlog=4096; root {site};
        location / {{ try_files $uri $uri/index.html =404; }}
        location = /health {{ return 200 "Ok"; }}
    }}
}}
"""
    )
    proc = _start(["nginx", "-c", str(conf)], None, run_dir / "plain.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc)
        yield _served(port, proc)
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
