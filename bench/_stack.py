"""What the client and service benchmarks share: a real wheelyard stack, the sdists, isolated pip.

``running_stack()`` starts an embedded Redis of its own (TCP on a free port, so no database of
the machine's Redis is touched) and the real ``wheelyard index``, ``api`` and ``worker``
processes through the tests' ``Stack`` helper, and stops them all on exit.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from server.embedded_redis import EmbeddedRedis  # noqa: E402
from tests.conftest import Stack, interpreter, isolated_pip_env, make_venv  # noqa: E402

__all__ = ["PACKAGES", "TARGET", "Stack", "interpreter", "isolated_pip_env", "make_venv", "running_stack"]

TARGET = "cp312-manylinux_x86_64"
# Compiled packages that build from source here with CPython 3.12 and gcc (C or Cython extensions).
PACKAGES = ["markupsafe==3.0.2", "murmurhash==1.0.13", "msgpack==1.1.0", "pyyaml==6.0.2", "ujson==5.10.0"]


def pip_env(**extra: str) -> dict[str, str]:
    """pip and uv with no configuration of this machine and no download cache."""
    return isolated_pip_env(PIP_NO_CACHE_DIR="1", **extra)


@contextlib.contextmanager
def running_stack(
    root: Path | None = None, *, keep: bool = False, targets: str = TARGET, **settings: str
) -> Iterator[Stack]:
    """Embedded Redis, index, API and a worker for ``targets`` (comma-separated; default ``TARGET``);
    ``keep`` leaves the directory behind."""
    base = root or Path(tempfile.mkdtemp(prefix="wheelyard-bench-stack-"))
    try:
        with EmbeddedRedis(base / "redis", tcp=True) as server:
            stack = Stack(base / "stack", server.url, **settings)
            try:
                stack.start_index_and_api()
                stack.start_worker("worker", targets)
                yield stack
            finally:
                stack.stop_all()
    finally:
        if keep:
            print(f"kept {base}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)


def wheels_dir(stack: Stack) -> Path:
    """The index's wheel directory (``Settings.wheels_dir``)."""
    return stack.data_dir / "wheels"


def build_from_source(stack: Stack, requirement: str, timeout: float = 900) -> dict[str, Any]:
    """Ask for ``requirement`` from source for ``TARGET`` and wait for its record; fail unless published."""
    response = stack.request(requirement, [TARGET], from_source=True)
    if response.status_code != 202:
        raise SystemExit(f"{requirement}: the API refused the request: {response.status_code} {response.text}")
    record = stack.wait_done(response.json()["builds"][0]["id"], timeout=timeout)
    if record["status"] != "published":
        raise SystemExit(f"{requirement}: build {record['status']}: {record.get('error')}\n{stack.log('worker')}")
    return record


def fresh_venv(path: Path) -> Path:
    """A fresh venv of CPython 3.12 with the pip it ships; returns its python."""
    return make_venv(interpreter("3.12"), path)


def run(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> None:
    result = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise SystemExit(f"failed ({result.returncode}): {' '.join(cmd)}\n{result.stdout}\n{result.stderr}")


def project_name(requirement: str) -> str:
    return requirement.split("==", 1)[0]
