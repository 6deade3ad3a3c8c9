"""The supervision of one hook call: its output streams to the log while a loop checks every
limit (builder/sandbox/limits.py); on a breach, or when the hook ends, what is left of its process
tree is killed, the rest of its output read, and the limits that show only at the end checked.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from builder.config import Limits
from builder.sandbox.cgroups import Cgroup
from builder.sandbox.limits import Breach, LimitedLog, exit_breach, running_breach, workdir_breach
from builder.sandbox.process_tree import kill_tree

# How often the limits are checked while output streams.
POLL_SECONDS = 0.1
# The end of a hook's output kept to look for a MemoryError where no memory cgroup reports one.
TAIL_BYTES = 4096


@dataclass
class HookSupervisor:
    """Watches the hook call led by ``proc`` (bubblewrap, when ``bubblewrap``) until it ends,
    breaks a limit or passes ``deadline`` (``time.monotonic()``, the whole build's)."""

    proc: subprocess.Popen[bytes]
    cgroup: Cgroup | None
    limits: Limits
    workdir: Path
    log: LimitedLog
    deadline: float
    bubblewrap: bool
    tail: bytearray = field(default_factory=bytearray)

    def supervise(self) -> Breach | None:
        """Watch the hook to its end; then nothing of its tree is left running. The limit it broke, if any."""
        proc = self.proc
        assert proc.stdout is not None
        breach: Breach | None = None
        try:
            breach = self._watch()
        except BaseException:
            kill_tree(proc, self.cgroup, self.bubblewrap)
            raise
        finally:
            if breach is not None or proc.poll() is None:
                kill_tree(proc, self.cgroup, self.bubblewrap)
            else:
                # The hook is done: nothing it started may outlive it.
                kill_tree(proc, self.cgroup, self.bubblewrap, grace=0.0)
            self._drain()
            proc.stdout.close()
        if breach is None:
            breach = exit_breach(proc.returncode, self.cgroup, self.limits, self.workdir, bytes(self.tail))
        return breach

    def _watch(self) -> Breach | None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        os.set_blocking(fd, False)
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        # A pidfd tells the moment the leader exits (waiting with a timeout polls, late by
        # up to tens of ms per hook); without one (Linux < 5.3) the loop polls instead.
        try:
            pidfd = os.pidfd_open(self.proc.pid)
        except OSError:
            pidfd = -1
        if pidfd >= 0:
            poller.register(pidfd, select.POLLIN)
        try:
            return self._watch_loop(poller, fd, pidfd)
        finally:
            if pidfd >= 0:
                os.close(pidfd)

    def _watch_loop(self, poller: select.poll, fd: int, pidfd: int) -> Breach | None:
        open_pipe = True
        next_check = 0.0
        next_disk = 0.0
        while True:
            now = time.monotonic()
            if now >= self.deadline:
                return Breach("timeout", self.limits.wall_seconds)
            if open_pipe or pidfd >= 0:
                open_pipe, breach = self._read_ready(poller, fd, now, open_pipe)
                if breach is not None:
                    return breach
            else:
                # The output is closed; wait for the leader to exit.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=min(POLL_SECONDS, max(self.deadline - now, 0.001)))
            now = time.monotonic()
            if now >= next_check:
                next_check = now + POLL_SECONDS
                breach = running_breach(self.proc, self.cgroup, self.limits)
                if breach is not None:
                    return breach
            if now >= next_disk:
                started = time.monotonic()
                breach = workdir_breach(self.workdir, self.limits)
                if breach is not None:
                    return breach
                # Keep the du cost to a few percent of the time.
                next_disk = time.monotonic() + max(1.0, 20 * (time.monotonic() - started))
            if self.proc.poll() is not None:
                return None

    def _read_ready(self, poller: select.poll, fd: int, now: float, open_pipe: bool) -> tuple[bool, Breach | None]:
        """Read the output the poll finds ready (or see the leader exit): whether the output is
        still open, and a breach of the log limit."""
        for ready, _ in poller.poll(int(min(POLL_SECONDS, self.deadline - now) * 1000) + 1):
            if ready != fd:
                continue  # the leader exited: seen by proc.poll() in the loop
            try:
                data = os.read(fd, 1 << 16)
            except BlockingIOError:
                continue
            if not data:
                poller.unregister(fd)
                return False, None
            if not self.log.output(data):
                return open_pipe, Breach("log-too-large", self.limits.log_bytes)
            self.tail += data[-TAIL_BYTES:]
            del self.tail[:-TAIL_BYTES]
        return open_pipe, None

    def _drain(self) -> None:
        """Read what is left in the pipe (the writers are gone), within the log limit."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        end = time.monotonic() + 5
        while time.monotonic() < end:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if not ready:
                if self.proc.returncode is not None:
                    break
                continue
            try:
                data = os.read(fd, 1 << 16)
            except BlockingIOError:
                continue
            if not data:
                break
            self.log.output(data)
