"""Run untrusted build hooks in a sandbox, under the limits of one build.

A build runs code written by strangers (``setup.py``, build backends). Every PEP 517 hook
goes through :meth:`Sandbox.run`, which is a pyproject_hooks subprocess runner, so
``build.ProjectBuilder(srcdir, python_executable=..., runner=sandbox.run)`` puts each hook
call in the sandbox. Build requirements are installed outside it (pip needs the network).

Isolation (bubblewrap, when ``enabled``):

* no network (``--unshare-net``: only a loopback that nothing listens on);
* the system read-only (``--ro-bind / /``); ``workdir`` is the one writable host directory;
* a private ``/tmp``, ``/home`` (``HOME=/home/build``) and ``/dev/shm``: size-capped tmpfs;
* the worker's own home, ``/run`` and every path in ``hidden`` (the data and config
  directories, which hold secrets) covered by an empty tmpfs (a file: by ``/dev/null``);
  paths the build needs from under them (the interpreter, ``read_only``) are bound back
  read-only;
* a new pid namespace, a new session, ``--die-with-parent``, a fresh ``/proc`` and ``/dev``;
* an environment built from scratch (``--clearenv``; see :func:`build_environment`);
  variables whose name looks like a secret are dropped even from ``extra_environ``;
* when the worker is root, the hook runs as ``nobody`` (uid 65534) with no capabilities
  (``setpriv``), so the host's root-only files stay unreadable and ``RLIMIT_NPROC``
  applies; ``workdir`` is chowned to that uid before each hook. A non-root worker runs
  bubblewrap in a user namespace as itself.

Limits (:class:`builder.config.Limits`), checked by a monitor loop while the output streams:

* wall time: one deadline for the whole build, from the first hook call;
* CPU time: the cgroup's total CPU time when a ``cpuacct``/``cpu`` controller is available,
  and ``RLIMIT_CPU`` on every process in any case;
* memory: the cgroup memory limit (v2 ``memory.max``, v1 ``memory.limit_in_bytes``), an OOM
  kill seen in ``memory.events``/``memory.oom_control``; without a memory cgroup,
  ``RLIMIT_AS`` per process and a ``MemoryError``/``ENOMEM`` in the failed hook's output;
* processes: the cgroup ``pids.max``, a refused fork seen in ``pids.events``; without a pids
  cgroup, ``RLIMIT_NPROC`` (effective only for a non-root uid, as in the bubblewrap case)
  and a count of the process tree;
* disk: the size of ``workdir`` (every hook's files, sdist, env, uv cache and wheel) measured
  while the build runs and after each hook, ``RLIMIT_FSIZE`` for any one file, and the size
  of each tmpfs;
* files: the inodes of ``workdir``, counted in the same walk (``builder.workdir.tree_usage``);
* log: bytes are counted as they stream to the :class:`BuildLog`, never held in memory.

A build that breaks a limit has its whole process tree terminated (SIGTERM, then SIGKILL
after a grace period; the cgroup, the pid namespace and the process group are all used), gets
one ``wheelyard: build killed: ...`` line in its log, and :class:`LimitExceeded` is raised.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import resource
import select
import shutil
import signal
import stat
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from builder.config import Limits, Settings
from builder.errors import InternalError, WheelyardError
from builder.secrets import Redactor, is_secret_variable, secret_values
from builder.workdir import chown_tree, tree_usage

__all__ = [
    "BUILD_HOME",
    "BUILD_UID",
    "BuildLog",
    "FileBuildLog",
    "LimitExceeded",
    "Redactor",
    "Sandbox",
    "ToolRefused",
    "build_environment",
    "is_secret_variable",
    "limit_mechanisms",
    "remove_stale_cgroups",
    "run_tool",
    "sandbox_available",
    "secret_values",
]

BUILD_UID = 65534  # nobody
BUILD_GID = 65534  # nogroup
BUILD_HOME = "/home/build"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# How long a terminated build gets to exit before SIGKILL.
TERMINATE_GRACE_SECONDS = 2.0
# How long bubblewrap may take to report its sandbox process before the hook is abandoned.
RELEASE_TIMEOUT_SECONDS = 30.0
# How often the limits are checked while output streams.
POLL_SECONDS = 0.1

CAUSES = ("timeout", "out-of-memory", "too-many-processes", "log-too-large", "disk-full", "too-many-files")
_MARKERS = {
    "timeout": "timeout after {limit} s",
    "out-of-memory": "out of memory (limit {limit} bytes)",
    "too-many-processes": "too many processes (limit {limit})",
    "log-too-large": "log too large (limit {limit} bytes)",
    "disk-full": "disk full (limit {limit} bytes)",
    "too-many-files": "too many files (limit {limit})",
}
_HINTS = {
    "timeout": "the build ran longer than allowed; raise WHEELYARD_BUILD_TIMEOUT or "
    "WHEELYARD_BUILD_CPU_SECONDS if it is a big project",
    "out-of-memory": "the build used more memory than allowed; raise WHEELYARD_BUILD_MEMORY "
    "or limit the build's parallelism",
    "too-many-processes": "the build started more processes than allowed; raise "
    "WHEELYARD_BUILD_PROCESSES if its parallelism needs it",
    "log-too-large": "the build printed more output than the hard cap, which is far above what a real build "
    "prints: it looks like output without end; raise WHEELYARD_BUILD_LOG_BYTES if the build is real",
    "disk-full": "the build wrote more data than allowed; raise WHEELYARD_BUILD_DISK",
    "too-many-files": "the build created more files and directories than allowed; raise WHEELYARD_BUILD_FILES",
}


class LimitExceeded(WheelyardError):
    """A build broke one of its limits and was killed with its whole process tree."""

    reference = "build-limit-exceeded"
    status_code = 422
    form = "build killed: the limit that fired, e.g. timeout after {limit} s, out of memory (limit {limit} bytes)"

    def __init__(self, cause: str, limit: int):
        if cause not in _MARKERS:
            raise ValueError(f"unknown limit cause {cause!r}")
        super().__init__(f"build killed: {marker_text(cause, limit)}", _HINTS[cause])
        self.cause = cause
        self.limit = limit

    def __reduce__(self) -> tuple[type[LimitExceeded], tuple[str, int]]:
        return (type(self), (self.cause, self.limit))

    def to_dict(self) -> dict[str, str | None]:
        # The limit that fired, as the sandbox saw it: the record's diagnosis names it from here.
        return {**super().to_dict(), "cause": self.cause, "limit": str(self.limit)}


def marker_text(cause: str, limit: int) -> str:
    return _MARKERS[cause].format(limit=limit)


def marker_line(cause: str, limit: int) -> str:
    """The one line written into the log of a killed build (the diagnosis rules match it)."""
    return f"wheelyard: build killed: {marker_text(cause, limit)}"


class BuildLog(Protocol):
    """Where a build's output goes: stdout and stderr of every hook, merged, as it comes."""

    def write(self, data: bytes) -> None: ...


class FileBuildLog:
    """A build log appended to a file, written through (not buffered), counting bytes."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.bytes_written = 0
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
            self.bytes_written += n

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> FileBuildLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- the environment -----------------------------------------------------------------------


def build_environment(
    settings: Settings | None = None,
    extra: Mapping[str, str] | None = None,
    *,
    home: str = BUILD_HOME,
    path: str = DEFAULT_PATH,
) -> dict[str, str]:
    """The base environment of a build, made from scratch (nothing is inherited from the worker).

    ``extra`` adds variables (a compiler flag, a ``PATH`` with a toolchain first); secrets
    are refused there too. With ``settings.cargo_vendor_dir`` set, cargo is pointed at the
    vendored crates (a directory source replacing crates.io); cargo is always offline.
    """
    env = {
        "PATH": path,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": home,
        "TMPDIR": "/tmp",
        "USER": "build",
        "LOGNAME": "build",
        "SHELL": "/bin/sh",
        "CARGO_HOME": f"{home}/.cargo",
        "CARGO_NET_OFFLINE": "true",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    if settings is not None and settings.cargo_vendor_dir is not None:
        env["CARGO_SOURCE_CRATES_IO_REPLACE_WITH"] = "vendored-sources"
        env["CARGO_SOURCE_VENDORED_SOURCES_DIRECTORY"] = str(settings.cargo_vendor_dir)
    for name, value in (extra or {}).items():
        if is_secret_variable(name, value):
            raise ValueError(f"refusing to pass {name} to a build: it looks like a secret")
        env[name] = value
    return env


def _clean_extra(extra: Mapping[str, str] | None) -> dict[str, str]:
    return {k: v for k, v in (extra or {}).items() if not is_secret_variable(k, v)}


# --- bubblewrap ------------------------------------------------------------------------------

# The system read-only, with a fresh /dev and /proc.
_SYSTEM_VIEW = ("--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc")
# No network, own pids, IPC and hostname; the sandbox dies with the worker and has no terminal.
_ISOLATION = (
    "--unshare-net",
    "--unshare-pid",
    "--unshare-ipc",
    "--unshare-uts",
    "--hostname",
    "build",
    "--die-with-parent",
    "--new-session",
)


def sandbox_available() -> bool:
    """Whether bubblewrap is installed and can make a sandbox without network here."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return False
    # The same system view and namespaces a build gets, so "available" means a build can run.
    argv = [bwrap, *_SYSTEM_VIEW, *_ISOLATION]
    if os.geteuid() != 0:
        argv.append("--unshare-user")
    argv += ["--", "true"]
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _is_within(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def interpreter_paths(python: str) -> list[Path]:
    """The directories a Python interpreter needs to run: its prefix and a venv's base prefix."""
    exe = Path(python)
    out: list[Path] = []
    if not exe.is_absolute():
        return out
    prefix = exe.parent.parent
    out.append(prefix)
    cfg = prefix / "pyvenv.cfg"
    if cfg.is_file():
        with contextlib.suppress(OSError):
            for line in cfg.read_text().splitlines():
                key, _, value = line.partition("=")
                if key.strip() == "home" and value.strip():
                    out.append(Path(value.strip()).resolve().parent)
    with contextlib.suppress(OSError):
        out.append(exe.resolve().parent.parent)
    return out


def closed_ancestors(paths: Sequence[Path]) -> list[Path]:
    """The directories above ``paths`` that the build user may not traverse (no search bit for
    others: a 0700 home holding pyenv's interpreters, say). The sandbox lays an empty tmpfs over
    each, which hides the rest of it, and binds back only the paths the build needs."""
    closed: list[Path] = []
    for path in paths:
        for ancestor in reversed(Path(path).absolute().parents):
            if ancestor == Path("/") or any(_is_within(ancestor, c) for c in closed):
                continue
            with contextlib.suppress(OSError):
                if not ancestor.stat().st_mode & stat.S_IXOTH:
                    closed.append(ancestor)
    return closed


# --- cgroups -------------------------------------------------------------------------------


@dataclass
class _Cgroup:
    """A child cgroup per hook call: memory, pids and CPU accounting, v1 or v2."""

    dirs: list[Path]  # one per hierarchy; the processes are put in each
    memory: Path | None = None
    pids: Path | None = None
    cpu: Path | None = None
    v2: Path | None = None  # the cgroup v2 child, shared by every controller v2 provides

    def is_v2(self, controller: Path | None) -> bool:
        """Whether a controller's directory is the cgroup v2 one (else v1, or none)."""
        return controller is not None and controller == self.v2

    @property
    def memory_v2(self) -> bool:
        return self.is_v2(self.memory)

    @property
    def cpu_v2(self) -> bool:
        return self.is_v2(self.cpu)

    @staticmethod
    def _ours() -> dict[str, tuple[Path, bool]]:
        """Controller name -> (directory of this process's cgroup, is v2)."""
        try:
            own = Path("/proc/self/cgroup").read_text().splitlines()
            mountinfo = Path("/proc/self/mountinfo").read_text().splitlines()
        except OSError:
            return {}
        paths: dict[str, str] = {}
        for line in own:
            _, controllers, path = line.split(":", 2)
            for c in controllers.split(",") if controllers else [""]:
                paths[c] = path
        found: dict[str, tuple[Path, bool]] = {}
        for line in mountinfo:
            left, _, right = line.partition(" - ")
            fields_l, fields_r = left.split(), right.split()
            if len(fields_l) < 5 or len(fields_r) < 3:
                continue
            root, mountpoint, fstype = fields_l[3], fields_l[4], fields_r[0]
            if fstype == "cgroup":
                for c in fields_r[2].split(","):
                    if c in ("memory", "pids", "cpuacct") and c in paths:
                        rel = os.path.relpath(paths[c], root)
                        found.setdefault(c, (Path(mountpoint) / rel, False))
            elif fstype == "cgroup2" and "" in paths:
                base = Path(mountpoint) / os.path.relpath(paths[""], root)
                try:
                    available = (base / "cgroup.controllers").read_text().split()
                except OSError:
                    continue
                for c in ("memory", "pids", "cpu"):
                    if c in available:
                        found.setdefault("cpuacct" if c == "cpu" else c, (base, True))
        return found

    @classmethod
    def create(cls, limits: Limits) -> _Cgroup | None:
        ours = cls._ours()
        name = f"wheelyard-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        made: dict[Path, Path] = {}
        group = cls(dirs=[])
        for controller, (base, v2) in ours.items():
            try:
                if v2:
                    # Controllers must be enabled for children; refused (EBUSY) where the
                    # worker's own cgroup holds processes and is not the root.
                    wanted = "cpu" if controller == "cpuacct" else controller
                    enabled = (base / "cgroup.subtree_control").read_text().split()
                    if wanted not in enabled:
                        (base / "cgroup.subtree_control").write_text(f"+{wanted}")
                if base not in made:
                    child = base / name
                    child.mkdir()
                    made[base] = child
                    group.dirs.append(child)
                child = made[base]
                if controller == "memory":
                    if v2:
                        (child / "memory.max").write_text(str(limits.memory_bytes))
                        with contextlib.suppress(OSError):
                            (child / "memory.swap.max").write_text("0")
                    else:
                        (child / "memory.limit_in_bytes").write_text(str(limits.memory_bytes))
                        with contextlib.suppress(OSError):
                            memsw = child / "memory.memsw.limit_in_bytes"
                            memsw.write_text(str(limits.memory_bytes))
                    group.memory = child
                elif controller == "pids":
                    (child / "pids.max").write_text(str(limits.processes))
                    group.pids = child
                elif controller == "cpuacct":
                    group.cpu = child
                if v2:
                    group.v2 = child
            except OSError:
                continue
        if not group.dirs:
            return None
        return group

    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    def add(self, pid: int) -> None:
        """Move a process (and what it starts from now on) into this cgroup, in every hierarchy."""
        for procs in self.procs_files():
            Path(procs).write_text(str(pid))

    @staticmethod
    def _keyed(path: Path, key: str) -> int:
        try:
            for line in path.read_text().splitlines():
                name, _, value = line.partition(" ")
                if name == key:
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def oom_kills(self) -> int:
        if self.memory is None:
            return 0
        if self.memory_v2:
            return self._keyed(self.memory / "memory.events", "oom_kill")
        return self._keyed(self.memory / "memory.oom_control", "oom_kill")

    def fork_refusals(self) -> int:
        if self.pids is None:
            return 0
        return self._keyed(self.pids / "pids.events", "max")

    def cpu_seconds(self) -> float:
        if self.cpu is None:
            return 0.0
        if self.cpu_v2:
            return self._keyed(self.cpu / "cpu.stat", "usage_usec") / 1e6
        try:
            return int((self.cpu / "cpuacct.usage").read_text()) / 1e9
        except (OSError, ValueError):
            return 0.0

    def pids_in(self) -> set[int]:
        out: set[int] = set()
        for d in self.dirs:
            with contextlib.suppress(OSError, ValueError):
                out.update(int(p) for p in (d / "cgroup.procs").read_text().split())
        return out

    def kill(self, sig: int, spare: frozenset[int] | set[int] = frozenset()) -> None:
        if sig == signal.SIGKILL and self.v2 is not None:
            with contextlib.suppress(OSError):
                (self.v2 / "cgroup.kill").write_text("1")
        for pid in self.pids_in() - spare:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)

    def remove(self) -> None:
        """Remove the cgroup; killed processes may take a moment to leave it (bounded)."""
        end = time.monotonic() + 10
        for d in self.dirs:
            while True:
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY or time.monotonic() > end:
                        break
                    time.sleep(0.01)  # wait for the kernel to release exiting tasks


def limit_mechanisms(limits: Limits) -> dict[str, str]:
    """How this host enforces the memory, process and CPU limits of a build (what a cgroup made
    now for them gets), for the worker's probe."""
    group = _Cgroup.create(limits)
    try:
        return _mechanisms(group)
    finally:
        if group is not None:
            group.remove()


def _mechanisms(group: _Cgroup | None) -> dict[str, str]:
    def cgroup(path: Path | None, v2: bool) -> str | None:
        return None if path is None else f"cgroup {'v2' if v2 else 'v1'}"

    memory = cgroup(group.memory, group.is_v2(group.memory)) if group else None
    pids = cgroup(group.pids, group.is_v2(group.pids)) if group else None
    cpu = cgroup(group.cpu, group.is_v2(group.cpu)) if group else None
    return {
        "memory": memory or "RLIMIT_AS per process",
        "processes": pids or "RLIMIT_NPROC and a count of the process tree",
        "cpu": f"{cpu} and RLIMIT_CPU" if cpu else "RLIMIT_CPU per process",
    }


def _fallbacks(group: _Cgroup | None) -> str:
    """The limits without a cgroup, with what enforces them instead; empty when all have one."""
    parts = [f"{what} limit ({how})" for what, how in _mechanisms(group).items() if not how.startswith("cgroup")]
    return "; ".join(parts) + (": per-process rlimits apply, see docs/deploy.md" if parts else "")


def remove_stale_cgroups() -> int:
    """Remove the cgroups left by worker processes that died (kill -9 mid-build): what is
    still in one is killed first. Returns how many were removed."""
    removed = 0
    bases = {base for base, _ in _Cgroup._ours().values()}
    for base in bases:
        for child in base.glob("wheelyard-*-*"):
            try:
                owner = int(child.name.split("-")[1])
            except ValueError:
                continue
            if _alive(owner):
                continue
            group = _Cgroup(dirs=[child])
            group.kill(signal.SIGKILL)
            group.remove()
            removed += not child.exists()
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# The worker's own tools (uv, auditwheel) die with the worker process that runs them: a pool
# process killed mid-step must not leave them running (setpriv is util-linux, like prlimit).
_SETPRIV = shutil.which("setpriv", path=DEFAULT_PATH)
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


# --- process trees without a cgroup ----------------------------------------------------------


def _proc_stat(pid: int) -> tuple[int, int, int] | None:
    """(ppid, pgrp, session) of a process, or None when it is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    rest = data[data.rfind(b")") + 2 :].split()
    return int(rest[1]), int(rest[2]), int(rest[3])


def _children(parent: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _proc_stat(int(entry))
            if st is not None and st[0] == parent:
                out.append(int(entry))
    return out


def _process_tree(leader: int, alive: bool = True) -> set[int]:
    """The leader, its descendants, and anything left in its process group or session.

    Once the leader is reaped (``alive`` false) its number may be reused, so only its
    group and session (which keep the number while they have members) are followed.
    """
    stats: dict[int, tuple[int, int, int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _proc_stat(int(entry))
            if st is not None:
                stats[int(entry)] = st
    tree = {pid for pid, (_, pgrp, sid) in stats.items() if pgrp == leader or sid == leader}
    if alive and leader in stats:
        tree.add(leader)
    changed = True
    while changed:
        changed = False
        for pid, (ppid, _, _) in stats.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                changed = True
    return tree


# --- the sandbox -----------------------------------------------------------------------------


class _Breach(Exception):
    def __init__(self, cause: str, limit: int):
        self.cause = cause
        self.limit = limit


@dataclass
class Sandbox:
    """Runs the hooks of one build in a sandbox, under one set of limits (see the module doc).

    ``workdir`` is the only writable host directory: the sdist is unpacked there, the isolated
    build environment lives there, the wheel is written there. ``hidden`` lists host paths the
    build must not read (the data and config directories); the worker's home and ``/run`` are
    always hidden. ``read_only`` lists paths to bind back read-only (an interpreter or a cargo
    vendor directory under a hidden path). ``enabled=False`` keeps every limit and the
    process-tree kill but runs without bubblewrap (a host without it); the log says so.
    """

    limits: Limits
    workdir: Path
    log: BuildLog
    enabled: bool = True
    read_only: Sequence[Path] = ()
    hidden: Sequence[Path] = ()
    env: Mapping[str, str] = field(default_factory=build_environment)
    # The parts of workdir the build may write (a root worker gives them to the build uid
    # before each hook); None: all of it. The rest of workdir (build environments the
    # worker installed) stays readable only, and is not walked before every hook.
    writable: Sequence[Path] | None = None
    # The host's network (installs of build requirements, which are data, by uv): off for hooks.
    network: bool = False
    # The limit this build broke, once it has: ``build`` wraps every runner exception in its
    # BuildBackendException (``.exception`` is the LimitExceeded), so it is kept here too.
    exceeded: LimitExceeded | None = field(default=None, init=False)
    _deadline: float | None = field(default=None, init=False, repr=False)
    _log_bytes: int = field(default=0, init=False, repr=False)
    _log_newline: bool = field(default=True, init=False, repr=False)
    _noted: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir).resolve()
        self.env = {k: v for k, v in self.env.items() if not is_secret_variable(k, v)}

    # The pyproject_hooks runner.
    def run(
        self,
        cmd: Sequence[str],
        cwd: str | None = None,
        extra_environ: Mapping[str, str] | None = None,
    ) -> None:
        """Run one hook; raise CalledProcessError on a nonzero exit, LimitExceeded on a limit."""
        code = self.run_command(cmd, cwd, extra_environ)
        if code != 0:
            raise subprocess.CalledProcessError(code, list(cmd))

    def run_command(
        self,
        cmd: Sequence[str],
        cwd: str | None = None,
        extra_environ: Mapping[str, str] | None = None,
    ) -> int:
        """Run a command in the same sandbox and under the same limits; return its exit code."""
        if self._deadline is None:
            self._deadline = time.monotonic() + self.limits.wall_seconds
        env = dict(self.env)
        env.update(_clean_extra(extra_environ))
        cmd = [str(c) for c in cmd]
        run_cwd = str(Path(cwd).resolve()) if cwd else str(self.workdir)
        cgroup = _Cgroup.create(self.limits)
        if not self._noted:
            self._noted = True
            if not self.enabled:
                self._write(
                    b"wheelyard: sandbox disabled: no bubblewrap isolation (limits and process-tree kill still apply)\n"
                )
            fallbacks = _fallbacks(cgroup)
            if fallbacks:
                # Said once per build, so a limit that acts differently is not a mystery.
                self._write(f"wheelyard: no cgroup for the build's {fallbacks}\n".encode())
        try:
            return self._supervise(cmd, run_cwd, env, cgroup)
        finally:
            if cgroup is not None:
                cgroup.remove()

    # -- building the command line --------------------------------------------------------

    def _drop_privileges(self) -> bool:
        return self.enabled and os.geteuid() == 0

    def _hook_dirs(self, cmd: Sequence[str]) -> tuple[list[Path], list[Path]]:
        """Paths named on the command line outside workdir: (read-only, writable).

        pyproject_hooks passes its control directory (``input.json`` in, ``output.json``
        out) as the last argument, and the in-process script; both live outside workdir.
        """
        ro: list[Path] = []
        rw: list[Path] = []
        for arg in cmd:
            if not arg.startswith("/"):
                continue
            p = Path(arg)
            if not p.exists() or _is_within(p.resolve(), self.workdir):
                continue
            if p.is_dir() and (p / "input.json").is_file():
                rw.append(p.resolve())
            else:
                ro.append(p)
        return ro, rw

    def _bwrap_argv(
        self,
        cmd: list[str],
        cwd: str,
        env: Mapping[str, str],
        rw_extra: list[Path],
        ro_extra: list[Path],
    ) -> list[str]:
        size = str(max(self.limits.disk_bytes, 1024 * 1024))
        tmpfs_roots = [Path("/tmp"), Path("/home"), Path("/dev/shm")]
        wanted_ro = [*interpreter_paths(cmd[0]), *self.read_only, *ro_extra]
        hidden = [Path(h).absolute() for h in (Path.home(), Path("/run"), *self.hidden)]
        if self._drop_privileges():
            hidden += closed_ancestors([*wanted_ro, self.workdir, *rw_extra])
        argv = [
            "bwrap",
            *_SYSTEM_VIEW,
            "--perms",
            "1777",
            "--size",
            size,
            "--tmpfs",
            "/tmp",
            "--perms",
            "0755",
            "--size",
            size,
            "--tmpfs",
            "/home",
            "--perms",
            "0777",
            "--dir",
            BUILD_HOME,
            "--perms",
            "1777",
            "--size",
            size,
            "--tmpfs",
            "/dev/shm",
        ]
        for h in hidden:
            if not h.exists() or _is_within(h, self.workdir):
                continue
            if h.is_dir():
                argv += ["--perms", "0755", "--tmpfs", str(h)]
                tmpfs_roots.append(h)
            else:
                argv += ["--ro-bind", "/dev/null", str(h)]
        # Bind back what the build needs from under a hidden or private path.
        binds: list[tuple[str, Path]] = []
        bound: list[Path] = [self.workdir, *rw_extra]
        for p in sorted({Path(p).absolute() for p in wanted_ro}, key=lambda p: len(p.parts)):
            covered = any(_is_within(p, t) for t in tmpfs_roots)
            if p.exists() and covered and not any(_is_within(p, b) for b in bound):
                binds.append(("--ro-bind", p))
                bound.append(p)
        if self.writable is None:
            binds.append(("--bind", self.workdir))
        else:
            # workdir read-only, its writable parts bound over it: a build cannot rename or
            # replace what the worker keeps there (the build environment, the taken wheel).
            binds.append(("--ro-bind", self.workdir))
            parts = {Path(p).absolute() for p in self.writable if Path(p).exists()}
            binds += [("--bind", p) for p in sorted(parts, key=lambda p: len(p.parts))]
        binds += [("--bind", p) for p in rw_extra]
        made: set[Path] = set()
        for flag, p in binds:
            # Mount points bubblewrap makes on a tmpfs are 0700: make them traversable.
            for anc in reversed(p.parents):
                if anc in made or not any(_is_within(anc, t) and anc != t for t in tmpfs_roots):
                    continue
                argv += ["--perms", "0755", "--dir", str(anc)]
                made.add(anc)
            argv += [flag, str(p), str(p)]
        argv += [
            *(a for a in _ISOLATION if not (self.network and a == "--unshare-net")),
            "--chdir",
            cwd,
            "--clearenv",
        ]
        if not self._drop_privileges():
            argv.append("--unshare-user")
        for name, value in env.items():
            argv += ["--setenv", name, value]
        argv.append("--")
        if self._drop_privileges():
            argv += [
                "setpriv",
                f"--reuid={BUILD_UID}",
                f"--regid={BUILD_GID}",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
                "--no-new-privs",
                "--",
            ]
        argv += cmd
        return argv

    def _give_to_build(self, paths: Sequence[Path]) -> None:
        """Make paths writable by the build uid (root worker only)."""
        for top in paths:
            chown_tree(top, BUILD_UID, BUILD_GID)

    # -- running and watching ---------------------------------------------------------------

    def _rlimits(self, cgroup: _Cgroup | None) -> list[tuple[int, tuple[int, int]]]:
        """The rlimits every process of the build starts with: (resource, (soft, hard))."""
        limits = self.limits
        fsize = max(limits.disk_bytes, 1)
        cpu = max(limits.cpu_seconds, 1)
        out = [
            (resource.RLIMIT_CPU, (cpu, cpu + 5)),
            (resource.RLIMIT_FSIZE, (fsize, fsize)),
            (resource.RLIMIT_CORE, (0, 0)),
        ]
        if cgroup is None or cgroup.memory is None:
            memory = max(limits.memory_bytes, 1)
            out.append((resource.RLIMIT_AS, (memory, memory)))
        if cgroup is None or cgroup.pids is None:
            out.append((resource.RLIMIT_NPROC, (limits.processes, limits.processes)))
        return out

    def _preexec(self, cgroup: _Cgroup | None) -> Callable[[], None]:
        """Join the cgroup and set the rlimits in the child (the path without bubblewrap only:
        a ``preexec_fn`` makes Python fork the whole worker instead of using vfork, and run
        Python in the child, several ms and more per hook)."""
        procs = cgroup.procs_files() if cgroup is not None else []
        rlimits = self._rlimits(cgroup)

        def preexec() -> None:  # runs in the child between fork and exec: syscalls only
            pid = str(os.getpid()).encode()
            for f in procs:
                fd = os.open(f, os.O_WRONLY)
                try:
                    os.write(fd, pid)
                finally:
                    os.close(fd)
            for res, value in rlimits:
                resource.setrlimit(res, value)

        return preexec

    def _release(self, proc: subprocess.Popen[bytes], info_fd: int, cgroup: _Cgroup | None) -> None:
        """Put bubblewrap's sandbox process in the cgroup and under the rlimits while it waits
        on its ``--block-fd``, before it has started anything (the caller then releases it).

        bubblewrap reports that process on ``--info-fd`` right after it is cloned; every other
        process of the build descends from it, so all of them start inside the limits.
        """
        data = b""
        end = time.monotonic() + RELEASE_TIMEOUT_SECONDS
        while True:
            ready, _, _ = select.select([info_fd], [], [], max(end - time.monotonic(), 0))
            chunk = os.read(info_fd, 4096) if ready else b""
            data += chunk
            try:
                child = int(json.loads(data)["child-pid"])
                break
            except (ValueError, KeyError, TypeError):
                if not ready:
                    # Never released without its limits: the caller kills the sandbox.
                    raise OSError(errno.ETIMEDOUT, "bubblewrap did not report its sandbox process") from None
                if not chunk:
                    if data:
                        raise OSError(errno.EPROTO, f"bubblewrap reported {data[:200]!r}") from None
                    # bubblewrap failed before it made the sandbox (it says why on stderr, into
                    # the log): nothing of the build runs.
                    return
        rlimits = self._rlimits(cgroup)
        for pid in (proc.pid, child):
            if cgroup is not None:
                cgroup.add(pid)
            for res, value in rlimits:
                resource.prlimit(pid, res, value)

    def _write(self, data: bytes) -> None:
        if data:
            self.log.write(data)
            self._log_newline = data.endswith(b"\n")

    def _mark(self, cause: str, limit: int) -> None:
        line = marker_line(cause, limit) + "\n"
        self._write((b"" if self._log_newline else b"\n") + line.encode())

    def _supervise(self, cmd: list[str], cwd: str, env: dict[str, str], cgroup: _Cgroup | None) -> int:
        assert self._deadline is not None
        if self.enabled:
            ro_extra, rw_extra = self._hook_dirs(cmd)
            if self._drop_privileges():
                if self.writable is None:
                    self._give_to_build([self.workdir, *rw_extra])
                else:
                    # workdir stays the worker's (only its writable parts are the build's);
                    # the build uid needs to traverse it.
                    os.chmod(self.workdir, 0o755)
                    self._give_to_build([*self.writable, *rw_extra])
            argv = self._bwrap_argv(cmd, cwd, env, rw_extra, ro_extra)
            popen_env: dict[str, str] = {"PATH": DEFAULT_PATH, "LANG": "C.UTF-8"}
        else:
            argv, popen_env = cmd, env
        if self.exceeded is not None:
            raise self.exceeded
        if time.monotonic() >= self._deadline:
            self._mark("timeout", self.limits.wall_seconds)
            self.exceeded = LimitExceeded("timeout", self.limits.wall_seconds)
            raise self.exceeded
        tail = bytearray()
        info_r = block_w = -1
        pass_fds: tuple[int, ...] = ()
        preexec = None
        if self.enabled:
            info_r, info_w = os.pipe()
            block_r, block_w = os.pipe()
            argv[1:1] = ["--info-fd", str(info_w), "--block-fd", str(block_r)]
            pass_fds = (info_w, block_r)
        else:
            preexec = self._preexec(cgroup)
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=popen_env,
                start_new_session=True,
                close_fds=True,
                pass_fds=pass_fds,
                preexec_fn=preexec,  # noqa: PLW1509 - syscalls only, see _preexec
            )
        except BaseException:
            for fd in (info_r, block_w):
                if fd >= 0:
                    os.close(fd)
            raise
        finally:
            for fd in pass_fds:
                os.close(fd)
        if self.enabled:
            try:
                self._release(proc, info_r, cgroup)
            except BaseException:
                self._kill_tree(proc, cgroup)
                raise
            finally:
                os.close(info_r)
                # Closing the block fd releases the sandbox; after a failure above the
                # sandbox is already dead.
                os.close(block_w)
        assert proc.stdout is not None
        breach: _Breach | None = None
        try:
            breach = self._watch(proc, cgroup, tail)
        except BaseException:
            self._kill_tree(proc, cgroup)
            raise
        finally:
            if breach is not None or proc.poll() is None:
                self._kill_tree(proc, cgroup)
            else:
                # The hook is done: nothing it started may outlive it.
                self._kill_tree(proc, cgroup, grace=0.0)
            self._drain(proc)
            proc.stdout.close()
        if breach is None:
            breach = self._after(proc.returncode, cgroup, tail)
        if breach is not None:
            self._mark(breach.cause, breach.limit)
            self.exceeded = LimitExceeded(breach.cause, breach.limit)
            raise self.exceeded
        return proc.returncode

    def _watch(self, proc: subprocess.Popen[bytes], cgroup: _Cgroup | None, tail: bytearray) -> _Breach | None:
        assert proc.stdout is not None and self._deadline is not None
        fd = proc.stdout.fileno()
        os.set_blocking(fd, False)
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        # A pidfd tells the moment the leader exits (waiting with a timeout polls, late by
        # up to tens of ms per hook); without one (Linux < 5.3) the loop polls instead.
        try:
            pidfd = os.pidfd_open(proc.pid)
        except OSError:
            pidfd = -1
        if pidfd >= 0:
            poller.register(pidfd, select.POLLIN)
        try:
            return self._watch_loop(proc, cgroup, tail, poller, fd, pidfd)
        finally:
            if pidfd >= 0:
                os.close(pidfd)

    def _watch_loop(
        self,
        proc: subprocess.Popen[bytes],
        cgroup: _Cgroup | None,
        tail: bytearray,
        poller: select.poll,
        fd: int,
        pidfd: int,
    ) -> _Breach | None:
        assert self._deadline is not None
        limits = self.limits
        open_pipe = True
        next_check = 0.0
        next_disk = 0.0
        while True:
            now = time.monotonic()
            if now >= self._deadline:
                return _Breach("timeout", limits.wall_seconds)
            if open_pipe or pidfd >= 0:
                for ready, _ in poller.poll(int(min(POLL_SECONDS, self._deadline - now) * 1000) + 1):
                    if ready != fd:
                        continue  # the leader exited: seen by proc.poll() below
                    try:
                        data = os.read(fd, 1 << 16)
                    except BlockingIOError:
                        continue
                    if not data:
                        open_pipe = False
                        poller.unregister(fd)
                        break
                    room = limits.log_bytes - self._log_bytes
                    if len(data) > room:
                        self._write(data[: max(room, 0)])
                        self._log_bytes = limits.log_bytes
                        return _Breach("log-too-large", limits.log_bytes)
                    self._write(data)
                    self._log_bytes += len(data)
                    tail += data[-4096:]
                    del tail[:-4096]
            else:
                # The output is closed; wait for the leader to exit.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=min(POLL_SECONDS, max(self._deadline - now, 0.001)))
            now = time.monotonic()
            if now >= next_check:
                next_check = now + POLL_SECONDS
                breach = self._check(proc, cgroup)
                if breach is not None:
                    return breach
            if now >= next_disk:
                started = time.monotonic()
                breach = self._check_workdir()
                if breach is not None:
                    return breach
                # Keep the du cost to a few percent of the time.
                next_disk = time.monotonic() + max(1.0, 20 * (time.monotonic() - started))
            if proc.poll() is not None:
                return None

    def _check(self, proc: subprocess.Popen[bytes], cgroup: _Cgroup | None) -> _Breach | None:
        limits = self.limits
        if cgroup is not None:
            # A refused fork first: a fork bomb also runs the cgroup out of memory, and
            # the process limit is the one it broke.
            if cgroup.fork_refusals() > 0:
                return _Breach("too-many-processes", limits.processes)
            if cgroup.oom_kills() > 0:
                return _Breach("out-of-memory", limits.memory_bytes)
            if cgroup.cpu_seconds() > limits.cpu_seconds:
                return _Breach("timeout", limits.cpu_seconds)
        if (
            (cgroup is None or cgroup.pids is None)
            and proc.poll() is None
            and len(_process_tree(proc.pid)) >= limits.processes
        ):
            return _Breach("too-many-processes", limits.processes)
        return None

    def _check_workdir(self, at_limit: bool = False) -> _Breach | None:
        """The work directory's blocks against the disk limit, its inodes against the file-count
        limit (a tree too bushy and deep to be walked counts as over it)."""
        usage = tree_usage(self.workdir)
        if usage.bytes > self.limits.disk_bytes or (at_limit and usage.bytes >= self.limits.disk_bytes):
            return _Breach("disk-full", self.limits.disk_bytes)
        if usage.inodes > self.limits.files or not usage.complete:
            return _Breach("too-many-files", self.limits.files)
        return None

    def _after(self, code: int, cgroup: _Cgroup | None, tail: bytearray) -> _Breach | None:
        """Limits that show only once the hook has ended."""
        limits = self.limits
        if cgroup is not None:
            breach = self._check_final(cgroup)
            if breach is not None:
                return breach
        # Measured after every hook, whatever its exit: a hook that ends before the monitor's
        # next look must not leave 300,000 files (or a disk's worth) for the next step.
        breach = self._check_workdir(at_limit=code != 0)
        if breach is not None:
            return breach
        if code == 0:
            return None
        if code in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
            return _Breach("timeout", limits.cpu_seconds)
        if code in (-signal.SIGXFSZ, 128 + signal.SIGXFSZ):
            return _Breach("disk-full", limits.disk_bytes)
        if (cgroup is None or cgroup.memory is None) and (
            b"MemoryError" in tail or os.strerror(errno.ENOMEM).encode() in tail
        ):
            return _Breach("out-of-memory", limits.memory_bytes)
        return None

    def _check_final(self, cgroup: _Cgroup) -> _Breach | None:
        limits = self.limits
        if cgroup.fork_refusals() > 0:
            return _Breach("too-many-processes", limits.processes)
        if cgroup.oom_kills() > 0:
            return _Breach("out-of-memory", limits.memory_bytes)
        if cgroup.cpu_seconds() > limits.cpu_seconds:
            return _Breach("timeout", limits.cpu_seconds)
        return None

    def _members(self, proc: subprocess.Popen[bytes], cgroup: _Cgroup | None) -> set[int]:
        if cgroup is not None:
            # Every process of the build starts in its cgroup (bubblewrap's sandbox process is
            # moved there before it is released, see _release; without bubblewrap the child
            # joins before it execs) and, running unprivileged, cannot leave it: the cgroup is the whole tree,
            # and reading it spares a scan of every process on the host after each hook.
            return cgroup.pids_in()
        return _process_tree(proc.pid, alive=proc.returncode is None)

    def _signal_all(self, proc: subprocess.Popen[bytes], cgroup: _Cgroup | None, sig: int) -> None:
        spare: set[int] = set()
        if self.enabled and sig != signal.SIGKILL and proc.poll() is None:
            # bubblewrap and its pid-1 stay up while the build gets SIGTERM, so that the
            # SIGKILL that follows tears the pid namespace down in order (see _kill_tree).
            spare = {proc.pid, *_children(proc.pid)}
        if cgroup is not None:
            cgroup.kill(sig, spare)
        if proc.returncode is None and not spare:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
        for pid in self._members(proc, cgroup) - spare:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)

    def _kill_tree(
        self,
        proc: subprocess.Popen[bytes],
        cgroup: _Cgroup | None,
        grace: float = TERMINATE_GRACE_SECONDS,
    ) -> None:
        """SIGTERM the whole tree, SIGKILL what is left after ``grace``, reap, and wait until
        no process of it remains (bounded)."""
        if grace > 0 and (proc.poll() is None or self._members(proc, cgroup)):
            self._signal_all(proc, cgroup, signal.SIGTERM)
            end = time.monotonic() + grace
            while time.monotonic() < end:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=0.05)
                if proc.returncode is not None and not self._members(proc, cgroup):
                    break
        if self.enabled and proc.poll() is None:
            # Kill bubblewrap's pid-1 first: the kernel then kills every process of the pid
            # namespace and bubblewrap exits only once they are all gone. Killing bubblewrap
            # itself first would leave that teardown running after we return.
            for pid in _children(proc.pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        end = time.monotonic() + 30
        while True:
            proc.poll()
            members = self._members(proc, cgroup)
            if proc.returncode is not None and not members:
                return
            self._signal_all(proc, cgroup, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.05)
            if time.monotonic() > end:
                return

    def _drain(self, proc: subprocess.Popen[bytes]) -> None:
        """Read what is left in the pipe (the writers are gone), within the log limit."""
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        end = time.monotonic() + 5
        while time.monotonic() < end:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if not ready:
                if proc.returncode is not None:
                    break
                continue
            try:
                data = os.read(fd, 1 << 16)
            except BlockingIOError:
                continue
            if not data:
                break
            room = self.limits.log_bytes - self._log_bytes
            if room > 0:
                self._write(data[:room])
                self._log_bytes += min(len(data), room)
