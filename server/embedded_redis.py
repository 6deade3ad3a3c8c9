"""A private Redis for a single-machine wheelyard: started, owned and stopped by us.

``EmbeddedRedis`` runs ``redis-server`` from PATH in ``data_dir/redis/``, listening on a
unix socket there and on no TCP port (or, if asked, on a free port of 127.0.0.1 only).
It keeps an append-only file, so requests it accepted survive a restart, and never
writes RDB snapshots. The two URL forms clients need differ:

* ``url`` is for redis-py (``redis.Redis.from_url``): ``unix:///…/redis.sock?db=0``;
* ``broker_url`` is for Celery and kombu (broker and result backend):
  ``redis+socket:///…/redis.sock``; kombu has no ``unix://`` transport.

Over TCP both are ``redis://127.0.0.1:PORT/0``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from builder.errors import RedisUnavailable

INSTALL_HINT = (
    "install Redis: `apt-get install redis-server` (Debian/Ubuntu) or `brew install redis` "
    "(macOS), or point WHEELYARD_REDIS_URL at a Redis you run"
)
# sun_path is 108 bytes on Linux (104 on macOS), with the terminating NUL.
_MAX_SOCKET_PATH = 103
_POLL_INTERVAL = 0.05
_TCP_ATTEMPTS = 3


class EmbeddedRedis:
    """A ``redis-server`` child process; use it as a context manager."""

    def __init__(
        self,
        data_dir: Path,
        *,
        tcp: bool = False,
        executable: str | None = None,
        startup_timeout: float = 15.0,
        stop_timeout: float = 15.0,
    ) -> None:
        self.directory = Path(data_dir) / "redis"
        self.tcp = tcp
        self.executable = executable
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.socket_path = self.directory / "redis.sock"
        self.log_path = self.directory / "redis.log"
        self.config_path = self.directory / "redis.conf"
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._lock: IO[str] | None = None

    # --- URLs ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The URL for redis-py."""
        if self.tcp:
            return f"redis://127.0.0.1:{self._port()}/0"
        return f"unix://{self.socket_path}?db=0"

    @property
    def broker_url(self) -> str:
        """The URL for Celery/kombu (broker and result backend)."""
        if self.tcp:
            return f"redis://127.0.0.1:{self._port()}/0"
        return f"redis+socket://{self.socket_path}"

    def client(self, *, retries: int = 3) -> redis.Redis:
        """A redis-py client for this server."""
        retry = Retry(NoBackoff(), retries)
        if self.tcp:
            return redis.Redis(host="127.0.0.1", port=self._port(), socket_timeout=5, retry=retry)
        return redis.Redis(unix_socket_path=str(self.socket_path), socket_timeout=5, retry=retry)

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def returncode(self) -> int | None:
        """How the server ended, or None while it runs (or was never started)."""
        return None if self._process is None else self._process.poll()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # --- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        if self._process is not None:
            raise RuntimeError("this EmbeddedRedis is already started")
        executable = self._find_executable()
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.tcp and len(os.fsencode(self.socket_path)) > _MAX_SOCKET_PATH:
            raise RedisUnavailable(
                f"the Redis socket path {self.socket_path} is too long for a unix socket",
                "use a shorter data directory (WHEELYARD_DATA_DIR), or TCP",
            )
        self._lock = self._take_lock()
        try:
            attempts = _TCP_ATTEMPTS if self.tcp else 1
            for attempt in range(1, attempts + 1):
                self.port = _free_port() if self.tcp else None
                self._write_config()
                if self._launch(executable, last=attempt == attempts):
                    return
        except BaseException:
            self._release_lock()
            raise

    def stop(self) -> None:
        process = self._process
        if process is None:
            return
        try:
            if process.poll() is None:
                with contextlib.suppress(redis.RedisError, OSError):
                    self.client(retries=0).shutdown(nosave=True)
                try:
                    process.wait(timeout=self.stop_timeout)
                except subprocess.TimeoutExpired:
                    process.terminate()
                    try:
                        process.wait(timeout=self.stop_timeout)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait()
        finally:
            self._process = None
            self._release_lock()

    # --- internals -------------------------------------------------------------------

    def _port(self) -> int:
        if self.port is None:
            raise RuntimeError("the embedded Redis has not been started")
        return self.port

    def _find_executable(self) -> str:
        found = shutil.which(self.executable or "redis-server")
        if found is None:
            raise RedisUnavailable(
                f"{self.executable or 'redis-server'} is not on PATH: wheelyard cannot start its embedded Redis",
                INSTALL_HINT,
            )
        return found

    def _take_lock(self) -> IO[str]:
        lock = (self.directory / "lock").open("w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise RedisUnavailable(
                f"another embedded Redis is running in {self.directory}",
                "stop the other wheelyard using this data directory, or use another one",
            ) from None
        return lock

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _write_config(self) -> None:
        lines = [
            f"dir {_quote(self.directory)}",
            "daemonize no",
            "appendonly yes",
            "appendfsync everysec",
            'save ""',
            f"logfile {_quote(self.log_path)}",
            "protected-mode yes",
        ]
        if self.tcp:
            lines += ["bind 127.0.0.1", f"port {self._port()}"]
        else:
            lines += [
                "port 0",
                f"unixsocket {_quote(self.socket_path)}",
                "unixsocketperm 700",
            ]
        self.config_path.write_text("\n".join(lines) + "\n")

    def _launch(self, executable: str, *, last: bool) -> bool:
        """Start the server and wait for PING; False if a TCP port was taken meanwhile."""
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log_file:
            # Errors redis-server prints before it opens its log file land there too.
            process = subprocess.Popen(
                [executable, str(self.config_path)],
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log_file,
            )
        self._process = process
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self._process = None
                log = self._log_since(log_offset)
                if self.tcp and not last and "Address already in use" in log:
                    return False
                raise RedisUnavailable(
                    f"redis-server exited with status {process.returncode} while starting: "
                    + (_last_line(log) or "no output"),
                    f"see {self.log_path}",
                )
            if self._answers_ping():
                return True
            time.sleep(_POLL_INTERVAL)
        self.stop()
        raise RedisUnavailable(
            f"redis-server did not answer PING within {self.startup_timeout:g}s",
            f"see {self.log_path}",
        )

    def _answers_ping(self) -> bool:
        if not self.tcp and not self.socket_path.exists():
            return False
        client = self.client(retries=0)
        try:
            return bool(client.ping())
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(offset)
                return fh.read().decode(errors="replace")
        except FileNotFoundError:
            return ""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _quote(path: Path) -> str:
    text = str(path)
    if any(c in text for c in ' "\\\n'):
        escaped = text.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    return text


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""
