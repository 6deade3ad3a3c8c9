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

from builder.config import Settings, to_environ
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


def child_environment(settings: Settings) -> dict[str, str]:
    """The environment of each child: every resolved setting, so none is lost on the way.

    ``wheelyard --config f.toml up`` resolves the file here; the children get its values
    as variables (and no WHEELYARD_CONFIG), so they load exactly these settings.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHEELYARD_")}
    env.update(to_environ(settings))
    if not settings.index_password:
        # The password ensure_upload_credentials generated: children read it from its file.
        env["WHEELYARD_INDEX_PASSWORD_FILE"] = str(settings.data_dir / "index-password")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_stack(settings: Settings, *, worker: bool, targets: str | None, out: TextIO, err: TextIO) -> int:
    from server.index import ensure_upload_credentials

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    user, _ = ensure_upload_credentials(settings)
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    try:
        with _redis(settings, err) as redis_url:
            env = child_environment(settings.with_overrides(redis_url=redis_url, index_user=user))

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
