"""The bubblewrap command line of a hook call: what the build sees of the host, and what not.

The system is read-only; ``workdir`` (or only its writable parts) is the one writable host
directory; ``/tmp``, ``/home`` and ``/dev/shm`` are private, size-capped tmpfs; the worker's
home, ``/run`` and every hidden path are covered by an empty tmpfs (a file: by ``/dev/null``),
with what the build needs from under them bound back read-only.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import resource
import select
import shutil
import stat
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from builder.sandbox.cgroups import Cgroup
from builder.sandbox.environment import BUILD_GID, BUILD_HOME, BUILD_UID

# The system read-only, with a fresh /dev and /proc.
SYSTEM_VIEW = ("--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc")
# No network, own pids, IPC and hostname; the sandbox dies with the worker and has no terminal.
ISOLATION = (
    "--unshare-net",
    "--unshare-pid",
    "--unshare-ipc",
    "--unshare-uts",
    "--hostname",
    "build",
    "--die-with-parent",
    "--new-session",
)
# How long bubblewrap may take to report its sandbox process before the hook is abandoned.
RELEASE_TIMEOUT_SECONDS = 30.0
# A root worker's hook runs as the build user, without capabilities.
_AS_BUILD_USER = (
    "setpriv",
    f"--reuid={BUILD_UID}",
    f"--regid={BUILD_GID}",
    "--clear-groups",
    "--inh-caps=-all",
    "--bounding-set=-all",
    "--no-new-privs",
    "--",
)


def sandbox_available() -> bool:
    """Whether bubblewrap is installed and can make a sandbox without network here."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return False
    # The same system view and namespaces a build gets, so "available" means a build can run.
    argv = [bwrap, *SYSTEM_VIEW, *ISOLATION]
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


def is_within(path: Path, parent: Path) -> bool:
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
            if ancestor == Path("/") or any(is_within(ancestor, c) for c in closed):
                continue
            with contextlib.suppress(OSError):
                if not ancestor.stat().st_mode & stat.S_IXOTH:
                    closed.append(ancestor)
    return closed


def hook_dirs(cmd: Sequence[str], workdir: Path) -> tuple[list[Path], list[Path]]:
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
        if not p.exists() or is_within(p.resolve(), workdir):
            continue
        if p.is_dir() and (p / "input.json").is_file():
            rw.append(p.resolve())
        else:
            ro.append(p)
    return ro, rw


@dataclass(frozen=True)
class Bubblewrap:
    """The host as one build sees it; ``argv`` is the command line of one hook call in it.

    ``writable`` None: all of ``workdir`` is writable; else workdir is bound read-only and only
    these parts of it read-write. ``as_build_user``: a root worker's hook runs as ``nobody``.
    """

    workdir: Path
    tmpfs_bytes: int
    read_only: Sequence[Path]
    hidden: Sequence[Path]
    writable: Sequence[Path] | None
    network: bool
    as_build_user: bool

    def argv(
        self,
        cmd: list[str],
        cwd: str,
        env: Mapping[str, str],
        rw_extra: list[Path],
        ro_extra: list[Path],
    ) -> list[str]:
        wanted_ro = [*interpreter_paths(cmd[0]), *self.read_only, *ro_extra]
        hidden = [Path(h).absolute() for h in (Path.home(), Path("/run"), *self.hidden)]
        if self.as_build_user:
            hidden += closed_ancestors([*wanted_ro, self.workdir, *rw_extra])
        argv, tmpfs_roots = self._private_mounts()
        argv += self._hide(hidden, tmpfs_roots)
        argv += self._bind_back(wanted_ro, rw_extra, tmpfs_roots)
        argv += [
            *(a for a in ISOLATION if not (self.network and a == "--unshare-net")),
            "--chdir",
            cwd,
            "--clearenv",
        ]
        if not self.as_build_user:
            argv.append("--unshare-user")
        for name, value in env.items():
            argv += ["--setenv", name, value]
        argv.append("--")
        if self.as_build_user:
            argv += _AS_BUILD_USER
        return argv + cmd

    def _private_mounts(self) -> tuple[list[str], list[Path]]:
        """The system view and the private tmpfs (``/tmp``, ``/home`` with the build's home,
        ``/dev/shm``), each capped at the disk limit; and the tmpfs roots."""
        size = str(max(self.tmpfs_bytes, 1024 * 1024))
        argv = [
            "bwrap",
            *SYSTEM_VIEW,
            *("--perms", "1777", "--size", size, "--tmpfs", "/tmp"),
            *("--perms", "0755", "--size", size, "--tmpfs", "/home"),
            *("--perms", "0777", "--dir", BUILD_HOME),
            *("--perms", "1777", "--size", size, "--tmpfs", "/dev/shm"),
        ]
        return argv, [Path("/tmp"), Path("/home"), Path("/dev/shm")]

    def _hide(self, hidden: list[Path], tmpfs_roots: list[Path]) -> list[str]:
        """Cover each hidden path: a directory by an empty tmpfs (added to ``tmpfs_roots``), a
        file by ``/dev/null``."""
        argv: list[str] = []
        for h in hidden:
            if not h.exists() or is_within(h, self.workdir):
                continue
            if h.is_dir():
                argv += ["--perms", "0755", "--tmpfs", str(h)]
                tmpfs_roots.append(h)
            else:
                argv += ["--ro-bind", "/dev/null", str(h)]
        return argv

    def _bind_back(self, wanted_ro: list[Path], rw_extra: list[Path], tmpfs_roots: list[Path]) -> list[str]:
        """Bind back what the build needs from under a hidden or private path, then workdir."""
        binds: list[tuple[str, Path]] = []
        bound: list[Path] = [self.workdir, *rw_extra]
        for p in sorted({Path(p).absolute() for p in wanted_ro}, key=lambda p: len(p.parts)):
            covered = any(is_within(p, t) for t in tmpfs_roots)
            if p.exists() and covered and not any(is_within(p, b) for b in bound):
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
        argv: list[str] = []
        made: set[Path] = set()
        for flag, p in binds:
            # Mount points bubblewrap makes on a tmpfs are 0700: make them traversable.
            for anc in reversed(p.parents):
                if anc in made or not any(is_within(anc, t) and anc != t for t in tmpfs_roots):
                    continue
                argv += ["--perms", "0755", "--dir", str(anc)]
                made.add(anc)
            argv += [flag, str(p), str(p)]
        return argv


def release_into_limits(
    proc: subprocess.Popen[bytes],
    info_fd: int,
    cgroup: Cgroup | None,
    rlimits: Sequence[tuple[int, tuple[int, int]]],
) -> None:
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
    for pid in (proc.pid, child):
        if cgroup is not None:
            cgroup.add(pid)
        for res, value in rlimits:
            resource.prlimit(pid, res, value)
