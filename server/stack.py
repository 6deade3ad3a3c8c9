"""``wheelyard up``: the whole stack on one machine.

With no ``WHEELYARD_REDIS_URL`` it starts its own Redis in the data directory (a unix
socket, so a busy port 6379 does not matter) and stops it on exit. The index, the API
and a worker run as child processes of this one, each the same ``wheelyard`` command a
deployment would run on its own. Once the stack is up, a child (or the embedded Redis)
that ends is started again with a growing pause and a line in the log, as a service
manager would (server/supervise.py); only SIGTERM or SIGINT ends the stack.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import requests

from builder.config import SETTINGS, Settings, to_environ
from builder.errors import StackStartFailed
from server.supervise import Supervised


@contextlib.contextmanager
def _redis(settings: Settings, err: TextIO) -> Iterator[tuple[str, list[Supervised]]]:
    """The Redis URL, and the embedded Redis's supervision when the stack runs its own."""
    if settings.redis_url:
        yield settings.redis_url, []
        return
    from server.embedded_redis import EmbeddedRedis

    with EmbeddedRedis(settings.data_dir) as embedded:
        err.write(f"wheelyard: embedded Redis at {embedded.url}\n")

        def start_again() -> None:
            embedded.stop()  # releases what the dead server held (its lock); the socket path stays
            embedded.start()

        yield embedded.url, [Supervised("embedded Redis", start_again, lambda: embedded.returncode, err)]


class _Child:
    """A ``wheelyard COMMAND`` child process, started again as the same command."""

    def __init__(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "server.cli", *self.args]
        self.proc = subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL)
        return self.proc

    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def supervised(self, log: TextIO) -> Supervised:
        return Supervised(self.name, self.start, self.returncode, log)


def _stop_children(children: list[_Child]) -> None:
    running = [c.proc for c in reversed(children) if c.proc is not None and c.proc.poll() is None]
    for proc in running:
        proc.terminate()
    for proc in running:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_http(url: str, proc: subprocess.Popen[bytes], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackStartFailed(
                f"the {what} exited with status {proc.returncode} while starting", "its output above says why"
            )
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise StackStartFailed(f"the {what} did not answer {url} within {timeout:.0f} s")


def child_environment(settings: Settings) -> dict[str, str]:
    """The environment of each child: every resolved setting, so none is lost on the way.

    ``wheelyard --config f.toml up`` resolves the file here; the children get its values
    as variables (and no WHEELYARD_CONFIG), so they load exactly these settings. Secrets
    (the API token, the passwords) are not among the variables, which any process of the
    same user may read in /proc and which every grandchild inherits: each is written to a
    0600 file in ``DATA_DIR/run/secrets/`` (a 0700 directory) and named by its ``*_FILE``
    variable, which the children's settings read.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHEELYARD_")}
    env.update(to_environ(settings))
    secrets_dir = settings.data_dir / "run" / "secrets"
    for s in SETTINGS:
        if s.secret and s.env in env:
            env[s.env + "_FILE"] = str(_secret_file(secrets_dir, s.env, env.pop(s.env)))
    if not settings.index_password:
        # The password ensure_upload_credentials generated: children read it from its file.
        env["WHEELYARD_INDEX_PASSWORD_FILE"] = str(settings.data_dir / "index-password")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _secret_file(directory: Path, name: str, value: str) -> Path:
    """``value`` in ``directory/name``, mode 0600, written anew (and atomically) on every start."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    path = directory / name
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=directory)
    try:
        with os.fdopen(fd, "w") as fh:  # mkstemp makes it 0600
            fh.write(value + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def run_stack(settings: Settings, *, worker: bool, targets: str | None, out: TextIO, err: TextIO) -> int:
    from server.index.credentials import ensure_upload_credentials

    if worker:
        # The worker's own start-up check, so that `up` never reports a stack that cannot build.
        from builder.capabilities import checked_capabilities

        for unusable in checked_capabilities(settings).unusable:
            err.write(unusable.line() + "\n")

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    user, _ = ensure_upload_credentials(settings)
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    children: list[_Child] = []
    try:
        with _redis(settings, err) as (redis_url, supervised):
            env = child_environment(settings.with_overrides(redis_url=redis_url, index_user=user))
            children = [_Child("index", ["index"], env), _Child("API", ["api"], env)]
            if worker:
                children.append(_Child("worker", ["worker", *(["--targets", targets] if targets else [])], env))
            _start_children(settings, children)
            out.write(
                f"wheelyard is up\n  API and dashboard: {settings.api_url}\n"
                f"  index:             {settings.simple_url}\n  data:              {settings.data_dir}\n"
                f"  try: wheelyard request markupsafe==3.0.2 -t cp312-manylinux_x86_64 --wait\n"
            )
            out.flush()
            # From here on a child that ends is started again (server/supervise.py), not the end of the stack.
            supervised += [child.supervised(err) for child in children]
            while not stop:
                for each in supervised:
                    each.check()
                time.sleep(0.5)
            return 0
    finally:
        _stop_children(children)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _start_children(settings: Settings, children: list[_Child]) -> None:
    """The index, then the API and the worker; a child that cannot start at all stops ``up`` (its output says why)."""
    by_name = {c.name: c for c in children}
    _wait_http(settings.index_url.rstrip("/") + "/health", by_name["index"].start(), "index")
    api = by_name["API"].start()
    if "worker" in by_name:
        by_name["worker"].start()
    _wait_http(settings.api_url.rstrip("/") + "/api/health", api, "API")
