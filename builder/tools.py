"""The worker's own tools (uv, auditwheel, python), run outside any sandbox: the one place that
enforces how (docs/sandbox.md, "What runs outside the sandbox"). Code a build controls never runs
here; it runs in builder/sandbox/.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from builder.errors import InternalError

__all__ = ["SYSTEM_PATH", "ToolRefused", "run_tool"]

# The system's own directories: where the worker's tools and their helpers are looked up.
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The worker's own tools (uv, auditwheel) die with the worker process that runs them: a pool
# process killed mid-step must not leave them running (setpriv is util-linux, like prlimit).
_SETPRIV = shutil.which("setpriv", path=SYSTEM_PATH)
# Variables that put code or paths of someone else's choosing into a Python tool.
_TOOL_ENV_REFUSED = ("PYTHON", "LD_", "UV_PYTHON_INSTALL", "UV_PROJECT", "VIRTUAL_ENV")


# The worker was about to run one of its tools in a way a build could influence: a bug of the
# worker's, never the package's.
ToolRefused = InternalError


def _writable_by_others(path: Path) -> str | None:
    """Why ``path`` or one of its parents could be changed by someone other than this worker
    (owned by another user, or group/world-writable without the sticky bit); None if not."""
    me = os.geteuid()
    for p in (path, *path.parents):
        st = os.stat(p)
        if st.st_uid not in (0, me):
            return f"{p} is owned by uid {st.st_uid}"
        if st.st_mode & 0o022 and not (p != path and st.st_mode & 0o1000):
            return f"{p} is writable by others (mode {st.st_mode & 0o7777:o})"
    return None


def run_tool(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path | str,
    timeout: float,
) -> tuple[int, bytes]:
    """Run one of the worker's own trusted tools outside the sandbox: (exit code, output).

    THE RULE (docs/sandbox.md, "What runs outside the sandbox"), enforced here, the one place
    where the worker starts a tool (uv, auditwheel and the patchelf it runs, python) outside a
    sandbox: nothing a build can write may decide what such a tool runs or imports.

    * the tool is named by an absolute path, and a Python tool runs with ``-I`` (no current
      directory, no user site, no ``PYTHON*`` variable on ``sys.path``: ``python -m X`` with a
      build's directory as the current one would import the build's ``X.py``);
    * its current directory, and every parent of it, can be written only by the worker
      (root or its own uid; sticky parents such as /tmp are fine): ``ToolRefused`` otherwise;
    * ``PYTHON*``, ``LD_*`` and similar variables are dropped from its environment;
    * a tool that reads what a build produced reads a copy in a directory the build can no
      longer reach (the pipeline takes the wheel out of the build's reach first), or runs in a
      :class:`Sandbox` instead of here (the installs of build requirements and of the wheel to
      prove, with network but without the data directory and secrets).

    It runs in its own session and is killed with everything it started when ``timeout``
    passes (``subprocess.TimeoutExpired`` is raised then), and gets SIGKILL when the calling
    process dies.
    """
    argv = [str(c) for c in cmd]
    _refuse_influenced(argv, env, cwd)
    clean_env = {k: v for k, v in env.items() if not k.upper().startswith(_TOOL_ENV_REFUSED)}
    if _SETPRIV is not None:
        argv = [_SETPRIV, "--pdeathsig", "KILL", "--", *argv]
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=clean_env,
        cwd=cwd,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return proc.returncode, out


def _refuse_influenced(argv: list[str], env: Mapping[str, str], cwd: Path | str) -> None:
    """Raise ``ToolRefused`` where what ``argv`` runs or imports could be decided by someone else."""
    if not argv or not os.path.isabs(argv[0]):
        raise ToolRefused(f"refusing to run a tool by a relative name: {argv[:1]}", "name it by its absolute path")
    if Path(argv[0]).name.startswith("python") and argv[1:2] != ["-I"]:
        raise ToolRefused(f"refusing to run {argv[0]} without -I", "pass -I first: isolated mode")
    # patchelf, and whatever else a tool finds on PATH, comes from the worker's directories too.
    search = [Path(d) for d in env.get("PATH", "").split(os.pathsep) if d and Path(d).is_dir()]
    for place in (Path(cwd).absolute(), Path(argv[0]).parent, *search):
        why = _writable_by_others(place)
        if why is not None:
            raise ToolRefused(
                f"refusing to run {Path(argv[0]).name}: {why}",
                "the worker runs its tools from, and in, directories only it can write",
            )
