"""``wheelyard up``: the whole stack on one machine.

With no ``WHEELYARD_REDIS_URL`` it starts its own Redis in the data directory (a unix
socket, so a busy port 6379 does not matter) and stops it on exit. The index, the API
and a worker run as child processes of this one, each the same ``wheelyard`` command a
deployment would run on its own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import TextIO

import requests

from builder.config import Settings
from builder.errors import WheelyardError


@contextlib.contextmanager
def _redis(settings: Settings, err: TextIO) -> Iterator[str]:
    if settings.redis_url:
        yield settings.redis_url
        return
    from server.embedded_redis import EmbeddedRedis

    with EmbeddedRedis(settings.data_dir) as embedded:
        err.write(f"wheelyard: embedded Redis at {embedded.url}\n")
        yield embedded.url


def _wait_http(url: str, proc: subprocess.Popen[bytes], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise WheelyardError(
                f"the {what} exited with status {proc.returncode} while starting",
                "its output above says why",
                reference="stack-start-failed",
            )
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise WheelyardError(
        f"the {what} did not answer {url} within {timeout:.0f} s",
        None,
        reference="stack-start-failed",
    )


def run_stack(settings: Settings, *, worker: bool, targets: str | None, out: TextIO, err: TextIO) -> int:
    from server.index import ensure_upload_credentials

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    user, password = ensure_upload_credentials(settings)
    password_file = settings.data_dir / "index-password"
    if not password_file.exists():
        password_file.write_text(password)
        password_file.chmod(0o600)
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    try:
        with _redis(settings, err) as redis_url:
            env = {k: v for k, v in os.environ.items() if not k.startswith("WHEELYARD_")}
            env.update(
                WHEELYARD_DATA_DIR=str(settings.data_dir),
                WHEELYARD_REDIS_URL=redis_url,
                WHEELYARD_INDEX_URL=settings.index_url,
                WHEELYARD_INDEX_PORT=str(settings.index_port),
                WHEELYARD_INDEX_HOST=settings.index_host,
                WHEELYARD_INDEX_USER=user,
                WHEELYARD_INDEX_PASSWORD_FILE=str(password_file),
                WHEELYARD_API_URL=settings.api_url,
                WHEELYARD_API_HOST=settings.api_host,
                WHEELYARD_API_PORT=str(settings.api_port),
                WHEELYARD_UPSTREAM_INDEX=settings.upstream_index,
                WHEELYARD_FROM_SOURCE="true" if settings.from_source_default else "false",
                WHEELYARD_SANDBOX="true" if settings.sandbox else "false",
                WHEELYARD_BUILD_ON_MISS="true" if settings.build_on_miss else "false",
                PYTHONUNBUFFERED="1",
            )
            for name, value in (
                ("WHEELYARD_API_TOKEN", settings.api_token),
                ("WHEELYARD_INDEX_READ_PASSWORD", settings.index_read_password),
                ("WHEELYARD_CARGO_VENDOR_DIR", settings.cargo_vendor_dir),
            ):
                if value:
                    env[name] = str(value)
            for field_name, var in (
                ("wall_seconds", "WHEELYARD_BUILD_TIMEOUT"),
                ("cpu_seconds", "WHEELYARD_BUILD_CPU_SECONDS"),
                ("memory_bytes", "WHEELYARD_BUILD_MEMORY"),
                ("processes", "WHEELYARD_BUILD_PROCESSES"),
                ("disk_bytes", "WHEELYARD_BUILD_DISK"),
                ("log_bytes", "WHEELYARD_BUILD_LOG_BYTES"),
            ):
                env[var] = str(getattr(settings.limits, field_name))

            def spawn(name: str, *args: str) -> subprocess.Popen[bytes]:
                proc = subprocess.Popen([sys.executable, "-m", "server.cli", *args], env=env, stdin=subprocess.DEVNULL)
                children.append((name, proc))
                return proc

            index = spawn("index", "index")
            _wait_http(settings.index_url.rstrip("/") + "/health", index, "index")
            api = spawn("api", "api")
            if worker:
                spawn("worker", "worker", *(["--targets", targets] if targets else []))
            _wait_http(settings.api_url.rstrip("/") + "/api/health", api, "API")
            out.write(
                f"wheelyard is up\n  API and dashboard: {settings.api_url}\n"
                f"  index:             {settings.simple_url}\n  data:              {settings.data_dir}\n"
                f"  try: wheelyard request markupsafe==3.0.2 -t cp312-manylinux_x86_64 --wait\n"
            )
            out.flush()
            while not stop:
                for name, proc in children:
                    if proc.poll() is not None:
                        err.write(f"wheelyard: the {name} exited with status {proc.returncode}; stopping\n")
                        stop = True
                time.sleep(0.5)
            return 0 if all(p.poll() is None for _, p in children) else 1
    finally:
        for _, proc in reversed(children):
            if proc.poll() is None:
                proc.terminate()
        for _, proc in reversed(children):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
