"""The limits of a build: what each breach is called and says, the per-process rlimits, the checks
that find a breach (in the cgroup, in ``workdir``, in a hook's exit), and the log's byte budget.

Every check is here once; builder/sandbox/supervisor.py calls them while a hook runs and after.
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from builder.buildlog import BuildLog
from builder.config import Limits
from builder.errors import WheelyardError
from builder.sandbox.cgroups import Cgroup
from builder.sandbox.process_tree import process_tree
from builder.workdir import tree_usage

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


@dataclass(frozen=True)
class Breach:
    """A limit a hook broke, as found by a check (before it is written in the log and raised)."""

    cause: str
    limit: int


def rlimits(limits: Limits, cgroup: Cgroup | None) -> list[tuple[int, tuple[int, int]]]:
    """The rlimits every process of the build starts with: (resource, (soft, hard))."""
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


def join_limits(limits: Limits, cgroup: Cgroup | None) -> Callable[[], None]:
    """A ``preexec_fn`` that joins the cgroup and sets the rlimits in the child (the path without
    bubblewrap only: a ``preexec_fn`` makes Python fork the whole worker instead of using vfork,
    and run Python in the child, several ms and more per hook)."""
    procs = cgroup.procs_files() if cgroup is not None else []
    wanted = rlimits(limits, cgroup)

    def preexec() -> None:  # runs in the child between fork and exec: syscalls only
        pid = str(os.getpid()).encode()
        for f in procs:
            fd = os.open(f, os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)
        for res, value in wanted:
            resource.setrlimit(res, value)

    return preexec


def cgroup_breach(cgroup: Cgroup, limits: Limits) -> Breach | None:
    """What the cgroup's counters say was broken, if anything."""
    # A refused fork first: a fork bomb also runs the cgroup out of memory, and the process
    # limit is the one it broke.
    if cgroup.fork_refusals() > 0:
        return Breach("too-many-processes", limits.processes)
    if cgroup.oom_kills() > 0:
        return Breach("out-of-memory", limits.memory_bytes)
    if cgroup.cpu_seconds() > limits.cpu_seconds:
        return Breach("timeout", limits.cpu_seconds)
    return None


def running_breach(proc: subprocess.Popen[bytes], cgroup: Cgroup | None, limits: Limits) -> Breach | None:
    """A limit broken while the hook runs: the cgroup's counters, or without a pids cgroup the
    size of its process tree."""
    if cgroup is not None:
        breach = cgroup_breach(cgroup, limits)
        if breach is not None:
            return breach
    if (
        (cgroup is None or cgroup.pids is None)
        and proc.poll() is None
        and len(process_tree(proc.pid)) >= limits.processes
    ):
        return Breach("too-many-processes", limits.processes)
    return None


def workdir_breach(workdir: Path, limits: Limits, at_limit: bool = False) -> Breach | None:
    """The work directory's blocks against the disk limit, its inodes against the file-count
    limit (a tree too bushy and deep to be walked counts as over it)."""
    usage = tree_usage(workdir)
    if usage.bytes > limits.disk_bytes or (at_limit and usage.bytes >= limits.disk_bytes):
        return Breach("disk-full", limits.disk_bytes)
    if usage.inodes > limits.files or not usage.complete:
        return Breach("too-many-files", limits.files)
    return None


def exit_breach(code: int, cgroup: Cgroup | None, limits: Limits, workdir: Path, tail: bytes) -> Breach | None:
    """Limits that show only once the hook has ended (``tail``: the end of its output)."""
    if cgroup is not None:
        breach = cgroup_breach(cgroup, limits)
        if breach is not None:
            return breach
    # Measured after every hook, whatever its exit: a hook that ends before the monitor's
    # next look must not leave 300,000 files (or a disk's worth) for the next step.
    breach = workdir_breach(workdir, limits, at_limit=code != 0)
    if breach is not None:
        return breach
    if code == 0:
        return None
    if code in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
        return Breach("timeout", limits.cpu_seconds)
    if code in (-signal.SIGXFSZ, 128 + signal.SIGXFSZ):
        return Breach("disk-full", limits.disk_bytes)
    if (cgroup is None or cgroup.memory is None) and (
        b"MemoryError" in tail or os.strerror(errno.ENOMEM).encode() in tail
    ):
        return Breach("out-of-memory", limits.memory_bytes)
    return None


class LimitedLog:
    """A build's log under the log limit: the hooks' output is counted against ``limit`` (the
    worker's own lines are not) and what would pass it is cut off."""

    def __init__(self, log: BuildLog, limit: int) -> None:
        self.log = log
        self.limit = limit
        self.output_bytes = 0
        self._newline = True

    def output(self, data: bytes) -> bool:
        """Write a hook's output, as much of it as the limit leaves room for; whether all fit."""
        room = max(self.limit - self.output_bytes, 0)
        part = data[:room]
        self.note(part)
        self.output_bytes += len(part)
        return len(part) == len(data)

    def note(self, data: bytes) -> None:
        """Write a line of the worker's own, or output already counted."""
        if data:
            self.log.write(data)
            self._newline = data.endswith(b"\n")

    def mark(self, cause: str, limit: int) -> None:
        """The one marker line of a killed build, on a line of its own."""
        line = marker_line(cause, limit) + "\n"
        self.note((b"" if self._newline else b"\n") + line.encode())
