"""The process tree of a hook call: who belongs to it, and how all of it is killed.

With a cgroup, the cgroup is the tree (a build's processes start in it and cannot leave it);
without one, the tree is the leader's descendants, process group and session, read from /proc.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from builder.sandbox.cgroups import Cgroup

# How long a terminated build gets to exit before SIGKILL.
TERMINATE_GRACE_SECONDS = 2.0


def _proc_stat(pid: int) -> tuple[int, int, int] | None:
    """(ppid, pgrp, session) of a process, or None when it is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    rest = data[data.rfind(b")") + 2 :].split()
    return int(rest[1]), int(rest[2]), int(rest[3])


def children(parent: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _proc_stat(int(entry))
            if st is not None and st[0] == parent:
                out.append(int(entry))
    return out


def process_tree(leader: int, alive: bool = True) -> set[int]:
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


def members(proc: subprocess.Popen[bytes], cgroup: Cgroup | None) -> set[int]:
    """The processes of the hook call led by ``proc``."""
    if cgroup is not None:
        # Every process of the build starts in its cgroup (bubblewrap's sandbox process is
        # moved there before it is released; without bubblewrap the child joins before it
        # execs) and, running unprivileged, cannot leave it: the cgroup is the whole tree,
        # and reading it spares a scan of every process on the host after each hook.
        return cgroup.pids_in()
    return process_tree(proc.pid, alive=proc.returncode is None)


def _signal_all(proc: subprocess.Popen[bytes], cgroup: Cgroup | None, sig: int, bubblewrap: bool) -> None:
    spare: set[int] = set()
    if bubblewrap and sig != signal.SIGKILL and proc.poll() is None:
        # bubblewrap and its pid-1 stay up while the build gets SIGTERM, so that the
        # SIGKILL that follows tears the pid namespace down in order (see kill_tree).
        spare = {proc.pid, *children(proc.pid)}
    if cgroup is not None:
        cgroup.kill(sig, spare)
    if proc.returncode is None and not spare:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
    for pid in members(proc, cgroup) - spare:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def kill_tree(
    proc: subprocess.Popen[bytes],
    cgroup: Cgroup | None,
    bubblewrap: bool,
    grace: float = TERMINATE_GRACE_SECONDS,
) -> None:
    """SIGTERM the whole tree, SIGKILL what is left after ``grace``, reap, and wait until
    no process of it remains (bounded). ``bubblewrap``: ``proc`` is bubblewrap."""
    if grace > 0 and (proc.poll() is None or members(proc, cgroup)):
        _signal_all(proc, cgroup, signal.SIGTERM, bubblewrap)
        end = time.monotonic() + grace
        while time.monotonic() < end:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.05)
            if proc.returncode is not None and not members(proc, cgroup):
                break
    if bubblewrap and proc.poll() is None:
        # Kill bubblewrap's pid-1 first: the kernel then kills every process of the pid
        # namespace and bubblewrap exits only once they are all gone. Killing bubblewrap
        # itself first would leave that teardown running after we return.
        for pid in children(proc.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
    end = time.monotonic() + 30
    while True:
        proc.poll()
        if proc.returncode is not None and not members(proc, cgroup):
            return
        _signal_all(proc, cgroup, signal.SIGKILL, bubblewrap)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0.05)
        if time.monotonic() > end:
            return
