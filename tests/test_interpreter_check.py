"""A worker serves only the interpreters that run in its build sandbox, as the build user.

The interpreter here is a CPython 3.12 that only its owner's group may run (mode 0750, as an
install made with umask 027 leaves it), and the worker's HOME points elsewhere (as in a systemd
unit or a container that sets its own): the build user cannot run it. (A 0700 directory *above*
an interpreter, such as root's home holding pyenv's, the sandbox covers and binds the interpreter
back: tests/test_sandbox.py.) The real worker command, the real bubblewrap sandbox and the real
interpreter are used.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import interpreter, isolated_pip_env

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the build user is another uid only for a root worker")


# The system's directories only (its python3.X, if any, is reachable); not pyenv's shims under /root.
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


@pytest.fixture
def locked_interpreter() -> Iterator[Path]:
    """A copy of CPython 3.12's executable that the build user may not run, outside the sandbox's
    private paths (it finds its standard library through its compiled-in prefix)."""
    root = Path(tempfile.mkdtemp(prefix="wheelyard-locked-", dir="/var/tmp"))
    try:
        root.chmod(0o755)
        (root / "py312" / "bin").mkdir(parents=True)
        python = root / "py312" / "bin" / "python3"
        shutil.copy2(os.path.realpath(interpreter("3.12")), python)
        python.chmod(0o750)
        yield python
    finally:
        shutil.rmtree(root, ignore_errors=True)


def worker(tmp_path: Path, python: Path, *args: str, path: str = SYSTEM_PATH) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = isolated_pip_env(
        PATH=path,
        HOME=str(home),
        PYENV_ROOT=str(tmp_path / "no-pyenv"),
        WHEELYARD_DATA_DIR=str(tmp_path / "data"),
        WHEELYARD_INTERPRETERS=str(python),
        WHEELYARD_REDIS_URL="redis://127.0.0.1:1/0",  # never reached: the worker stops before
    )
    return subprocess.run(
        [sys.executable, "-m", "server.cli", "worker", *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_an_interpreter_the_build_user_cannot_reach_is_not_served_and_probe_says_why(
    tmp_path: Path, locked_interpreter: Path
) -> None:
    probe = worker(tmp_path, locked_interpreter, "--probe")
    assert probe.returncode == 0, probe.stderr
    data: dict[str, Any] = json.loads(probe.stdout)
    assert "cp312-manylinux_x86_64" not in data["targets"]
    unusable = {u["path"]: u for u in data["unusable"]}
    assert str(locked_interpreter) in unusable, data["unusable"]
    entry = unusable[str(locked_interpreter)]
    assert entry["version"] == [3, 12]
    assert "does not run in the build sandbox as the build user" in entry["reason"]
    assert f"the interpreter {locked_interpreter} (mode 0750) cannot be run by the build user" in entry["hint"]
    assert "WHEELYARD_INTERPRETERS" in entry["hint"]
    # The worker's start-up log (stderr) says the same.
    assert f"wheelyard: interpreter {locked_interpreter} (Python 3.12) is not served" in probe.stderr

    # Asked to serve that target anyway, the worker does not start, and says why.
    refused = worker(tmp_path, locked_interpreter, "--targets", "cp312-manylinux_x86_64")
    assert refused.returncode != 0
    assert "this worker cannot build cp312-manylinux_x86_64" in refused.stderr
    assert f"the interpreter {locked_interpreter} (mode 0750)" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_worker_left_with_no_target_exits_non_zero_and_says_why(tmp_path: Path, locked_interpreter: Path) -> None:
    # A PATH with the toolchain and bubblewrap but no other interpreter: the locked one is all there is.
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("cc", "gcc", "bwrap", "patchelf", "true", "setpriv"):
        found = shutil.which(tool, path=SYSTEM_PATH)
        if found:
            (tools / tool).symlink_to(found)
    for args in (("--probe",), ()):
        result = worker(tmp_path, locked_interpreter, *args, path=str(tools))
        assert result.returncode != 0, result.stdout
        assert "this worker has no target it can build" in result.stderr
        assert f"wheelyard: interpreter {locked_interpreter} (Python 3.12) is not served" in result.stderr
        assert "[no-buildable-target]" in result.stderr
        assert "Traceback" not in result.stderr
