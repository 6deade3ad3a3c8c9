"""The sandbox of one build: runs each of its hooks (a pyproject_hooks runner) under bubblewrap and
the build's limits, and raises ``LimitExceeded`` for the limit a hook broke."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from builder.buildlog import BuildLog
from builder.config import Limits
from builder.sandbox.bubblewrap import Bubblewrap, hook_dirs, release_into_limits
from builder.sandbox.cgroups import Cgroup, fallbacks
from builder.sandbox.environment import BUILD_GID, BUILD_UID, DEFAULT_PATH, build_environment, without_secrets
from builder.sandbox.limits import LimitedLog, LimitExceeded, join_limits, rlimits
from builder.sandbox.process_tree import kill_tree
from builder.sandbox.supervisor import HookSupervisor
from builder.secrets import is_secret_variable
from builder.workdir import chown_tree


@dataclass
class Sandbox:
    """Runs the hooks of one build in a sandbox, under one set of limits (see builder/sandbox/).

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
    _output: LimitedLog = field(init=False, repr=False)
    _noted: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir).resolve()
        self.env = {k: v for k, v in self.env.items() if not is_secret_variable(k, v)}
        self._output = LimitedLog(self.log, self.limits.log_bytes)

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
        env.update(without_secrets(extra_environ))
        argv = [str(c) for c in cmd]
        run_cwd = str(Path(cwd).resolve()) if cwd else str(self.workdir)
        cgroup = Cgroup.create(self.limits)
        if not self._noted:
            self._noted = True
            self._note_mechanisms(cgroup)
        try:
            return self._supervise(argv, run_cwd, env, cgroup)
        finally:
            if cgroup is not None:
                cgroup.remove()

    def _note_mechanisms(self, cgroup: Cgroup | None) -> None:
        """Said once per build, so a limit that acts differently is not a mystery."""
        if not self.enabled:
            self._output.note(
                b"wheelyard: sandbox disabled: no bubblewrap isolation (limits and process-tree kill still apply)\n"
            )
        without_cgroup = fallbacks(cgroup)
        if without_cgroup:
            self._output.note(f"wheelyard: no cgroup for the build's {without_cgroup}\n".encode())

    def _as_build_user(self) -> bool:
        return self.enabled and os.geteuid() == 0

    def _command(self, cmd: list[str], cwd: str, env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        """The command line that runs ``cmd`` (in bubblewrap, when enabled) and the environment
        it is started with; a root worker first gives the writable paths to the build user."""
        if not self.enabled:
            return cmd, env
        ro_extra, rw_extra = hook_dirs(cmd, self.workdir)
        if self._as_build_user():
            if self.writable is None:
                self._give_to_build([self.workdir, *rw_extra])
            else:
                # workdir stays the worker's (only its writable parts are the build's);
                # the build uid needs to traverse it.
                os.chmod(self.workdir, 0o755)
                self._give_to_build([*self.writable, *rw_extra])
        view = Bubblewrap(
            workdir=self.workdir,
            tmpfs_bytes=self.limits.disk_bytes,
            read_only=self.read_only,
            hidden=self.hidden,
            writable=self.writable,
            network=self.network,
            as_build_user=self._as_build_user(),
        )
        return view.argv(cmd, cwd, env, rw_extra, ro_extra), {"PATH": DEFAULT_PATH, "LANG": "C.UTF-8"}

    def _give_to_build(self, paths: Sequence[Path]) -> None:
        """Make paths writable by the build uid (root worker only)."""
        for top in paths:
            chown_tree(top, BUILD_UID, BUILD_GID)

    def _supervise(self, cmd: list[str], cwd: str, env: dict[str, str], cgroup: Cgroup | None) -> int:
        assert self._deadline is not None
        argv, popen_env = self._command(cmd, cwd, env)
        if self.exceeded is not None:
            raise self.exceeded
        if time.monotonic() >= self._deadline:
            self._output.mark("timeout", self.limits.wall_seconds)
            self.exceeded = LimitExceeded("timeout", self.limits.wall_seconds)
            raise self.exceeded
        proc = self._start(argv, cwd, popen_env, cgroup)
        hook = HookSupervisor(
            proc, cgroup, self.limits, self.workdir, self._output, self._deadline, bubblewrap=self.enabled
        )
        breach = hook.supervise()
        if breach is not None:
            self._output.mark(breach.cause, breach.limit)
            self.exceeded = LimitExceeded(breach.cause, breach.limit)
            raise self.exceeded
        return proc.returncode

    def _start(self, argv: list[str], cwd: str, env: dict[str, str], cgroup: Cgroup | None) -> subprocess.Popen[bytes]:
        """Start the hook inside its limits: bubblewrap's sandbox process is put in the cgroup and
        under the rlimits before it is released to run anything; without bubblewrap, the child
        joins them before it execs."""
        info_r = block_w = -1
        pass_fds: tuple[int, ...] = ()
        preexec: Callable[[], None] | None = None
        if self.enabled:
            info_r, info_w = os.pipe()
            block_r, block_w = os.pipe()
            argv[1:1] = ["--info-fd", str(info_w), "--block-fd", str(block_r)]
            pass_fds = (info_w, block_r)
        else:
            preexec = join_limits(self.limits, cgroup)
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                start_new_session=True,
                close_fds=True,
                pass_fds=pass_fds,
                preexec_fn=preexec,  # noqa: PLW1509 - syscalls only, see join_limits
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
                release_into_limits(proc, info_r, cgroup, rlimits(self.limits, cgroup))
            except BaseException:
                kill_tree(proc, cgroup, bubblewrap=True)
                raise
            finally:
                os.close(info_r)
                # Closing the block fd releases the sandbox; after a failure above the
                # sandbox is already dead.
                os.close(block_w)
        return proc
