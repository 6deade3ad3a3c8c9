"""Cgroups of builds, v1 or v2: one child of the worker's own cgroup per hook call, with the
memory, pids and CPU controllers this host lets the worker use, and what enforces a limit where
a controller is missing (per-process rlimits, builder/sandbox/limits.py).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from builder.config import Limits


def own_hierarchies() -> dict[str, tuple[Path, bool]]:
    """Controller name -> (directory of this process's cgroup in its hierarchy, is v2)."""
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


@dataclass
class Cgroup:
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

    @classmethod
    def create(cls, limits: Limits) -> Cgroup | None:
        ours = own_hierarchies()
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
    group = Cgroup.create(limits)
    try:
        return _mechanisms(group)
    finally:
        if group is not None:
            group.remove()


def _mechanisms(group: Cgroup | None) -> dict[str, str]:
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


def fallbacks(group: Cgroup | None) -> str:
    """The limits without a cgroup, with what enforces them instead; empty when all have one."""
    parts = [f"{what} limit ({how})" for what, how in _mechanisms(group).items() if not how.startswith("cgroup")]
    return "; ".join(parts) + (": per-process rlimits apply, see docs/deploy.md" if parts else "")


def remove_stale_cgroups() -> int:
    """Remove the cgroups left by worker processes that died (kill -9 mid-build): what is
    still in one is killed first. Returns how many were removed."""
    removed = 0
    bases = {base for base, _ in own_hierarchies().values()}
    for base in bases:
        for child in base.glob("wheelyard-*-*"):
            try:
                owner = int(child.name.split("-")[1])
            except ValueError:
                continue
            if _alive(owner):
                continue
            group = Cgroup(dirs=[child])
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
