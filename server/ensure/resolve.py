"""The closure of the sources for one target: locks as they are, requirements by a real resolver.

Unpinned requirements are resolved by ``uv pip compile`` with the target's Python version and
platform, against the upstream index, with no configuration of this host (``--no-config``, a
clean environment). It first runs with ``--no-build`` (no package's code runs); only when a
release has no wheel uv can use does it run again allowing uv to read (or, for an sdist without
static metadata, prepare) that release's metadata from its sdist. Preparing metadata runs the
sdist's build backend, a stranger's code, so that second run is in the build sandbox: with the
network (uv downloads), without the data directory, the service's secrets or a shared cache, and
able to write only its own temporary directory.
Private projects are given to uv as overrides pointing at their wheels on wheelyard's index, so
the resolver takes them from there and never asks upstream for their names.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from builder.buildlog import FileBuildLog
from builder.config import Settings
from builder.errors import ResolutionFailed
from builder.installs import uv_binary
from builder.sandbox import LimitExceeded, Sandbox, build_environment, interpreter_paths
from builder.secrets import is_secret_variable, secret_paths
from builder.targets import BuildTarget
from server.ensure.inputs import Pin, Sources
from server.ensure.targets import marker_environment, uv_platform

RESOLVE_TIMEOUT = 600
_MESSAGE_LINES = 30


@dataclass(frozen=True)
class Resolver:
    """How to resolve: the upstream index, uv's cache, the glibc mirrored wheels may need."""

    upstream_index: str
    cache_dir: Path
    glibc_max: tuple[int, int] = (2, 28)
    timeout: float = RESOLVE_TIMEOUT
    # The deployment's settings make the sandbox that runs sdists' build backends; without them
    # (tests of the resolver alone) builds are never allowed.
    settings: Settings | None = None

    def closure(self, sources: Sources, target: BuildTarget, overrides: Mapping[str, str]) -> list[Pin]:
        """Every release the sources install on ``target`` (``overrides``: private name -> wheel URL)."""
        pins: dict[tuple[str, str], Pin] = {}
        environment = marker_environment(target)
        for lock in sources.locks:
            for pin in lock.closure(environment):
                pins.setdefault((pin.name, pin.version), pin)
        if sources.requirements:
            for pin in self._compile(sources, target, overrides):
                pins.setdefault((pin.name, pin.version), pin)
        return sorted(pins.values(), key=lambda p: (p.name, p.version))

    def _compile(self, sources: Sources, target: BuildTarget, overrides: Mapping[str, str]) -> list[Pin]:
        with tempfile.TemporaryDirectory(prefix="wheelyard-resolve-") as tmp:
            work = Path(tmp)
            cmd = self._command(sources, target, overrides, work)
            result = self._run([*cmd, "--no-build"], target, work)
            if result.returncode != 0 and "--no-build" in result.stderr and self.settings is not None:
                # A release with no wheel uv can use (the very thing wheelyard builds): its metadata
                # comes from its sdist, which uv reads, or prepares with the sdist's build backend.
                result = self._run_sandboxed(cmd, target, work, self.settings)
        if result.returncode != 0:
            raise ResolutionFailed(
                f"uv could not resolve the requirements for {target}:\n{_tail(result.stderr, overrides)}",
                "change the requirements that conflict, or ensure a lock file (uv lock / uv export) that resolves",
            )
        return parse_compiled(result.stdout, overrides)

    def _command(self, sources: Sources, target: BuildTarget, overrides: Mapping[str, str], work: Path) -> list[str]:
        assert target.python_version is not None
        inputs = work / "requirements.in"
        inputs.write_text("\n".join(sources.requirements) + "\n")
        cmd = [
            uv_binary(),
            "pip",
            "compile",
            "--no-config",
            "--no-header",
            "--no-annotate",
            "--quiet",
            "--python-version",
            target.python_version,
            "--python-platform",
            uv_platform(target, self.glibc_max),
            "--index-url",
            self.upstream_index,
            str(inputs),
        ]
        if sources.constraints:
            (work / "constraints.txt").write_text("\n".join(sources.constraints) + "\n")
            cmd += ["--constraint", str(work / "constraints.txt")]
        if overrides:
            lines = [f"{name} @ {url}" for name, url in sorted(overrides.items())]
            (work / "overrides.txt").write_text("\n".join(lines) + "\n")
            cmd += ["--overrides", str(work / "overrides.txt")]
        return cmd

    def _run(self, cmd: list[str], target: BuildTarget, work: Path) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                cmd,
                env=self._env(work),
                cwd=work,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise ResolutionFailed(
                f"resolving for {target} took longer than {self.timeout:.0f} s",
                "pin more of the requirements (a lock file is taken as it is)",
            ) from None

    def _run_sandboxed(
        self, cmd: list[str], target: BuildTarget, work: Path, settings: Settings
    ) -> subprocess.CompletedProcess[str]:
        """``cmd`` in the build sandbox (see the module's docstring); its result read from the files it wrote."""
        output = work / "compiled.txt"
        cache = work / "uv-cache"
        cache.mkdir()
        env = {**self._env(work), "UV_CACHE_DIR": str(cache), "HOME": str(work)}
        env.pop("LANG", None)
        # The log lives outside what the sandbox may write, so the build cannot swap it for a link.
        with (
            tempfile.TemporaryDirectory(prefix="wheelyard-resolve-log-") as logs,
            FileBuildLog(Path(logs) / "resolve.log") as log,
        ):
            sandbox = Sandbox(
                limits=settings.limits,
                workdir=work,
                log=log,
                enabled=settings.sandbox,
                read_only=interpreter_paths(sys.executable),
                env=build_environment({k: v for k, v in env.items() if not is_secret_variable(k, v)}),
                hidden=[settings.data_dir, *secret_paths(os.environ)],
                network=True,
            )
            try:
                code = sandbox.run_command([*cmd, "--output-file", str(output)], cwd=str(work))
            except LimitExceeded as exc:
                raise ResolutionFailed(
                    f"resolving for {target} stopped at a build sandbox limit: {exc.message}",
                    "pin more of the requirements (a lock file is taken as it is)",
                ) from None
            stderr = log.path.read_text(errors="replace")
        return subprocess.CompletedProcess(cmd, code, _read_regular(output) if code == 0 else "", stderr)

    def _env(self, work: Path) -> dict[str, str]:
        """uv with no configuration of this host: no uv.toml, no UV_* or PIP_* variables."""
        env = {
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]),
            "HOME": str(work),
            "UV_NO_CONFIG": "1",
            "UV_CACHE_DIR": str(self.cache_dir),
            "UV_PYTHON_DOWNLOADS": "never",
            "UV_SYSTEM_CERTS": "1",
            "LANG": "C.UTF-8",
        }
        for name in ("SSL_CERT_FILE", "SSL_CERT_DIR", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY"):
            if name in os.environ:
                env[name] = os.environ[name]
        return env


def _read_regular(path: Path) -> str:
    """A file the sandbox wrote, read only if it is a regular file (never through a link it planted)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return ""
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        return fh.read(16 * 1024 * 1024).decode(errors="replace")


def parse_compiled(text: str, overrides: Mapping[str, str]) -> list[Pin]:
    """``uv pip compile`` output as pins; a private override's line (``name @ URL``) by its wheel's version."""
    from server.ensure.holdings import file_of

    pins = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        try:
            req = Requirement(line.rstrip("\\").strip())
        except InvalidRequirement:
            raise ResolutionFailed(f"uv printed a line that is no requirement: {line!r}", "report this") from None
        name = canonicalize_name(req.name)
        if req.url:
            filename = req.url.rsplit("/", 1)[-1]
            parsed = file_of(filename)
            if name not in overrides or parsed is None:
                raise ResolutionFailed(f"uv resolved {name} to a URL, {filename}", "name releases of an index")
            pins.append(Pin(name, parsed[1].version))
            continue
        pinned = [s.version for s in req.specifier if s.operator == "=="]
        if len(pinned) != 1:
            raise ResolutionFailed(f"uv printed {line!r}, which pins no version", "report this")
        try:
            pins.append(Pin(name, str(Version(pinned[0]))))
        except InvalidVersion:
            pins.append(Pin(name, pinned[0]))
    return pins


def _tail(stderr: str, overrides: Mapping[str, str]) -> str:
    """The last lines uv printed, without the private wheels' URLs (they may carry a read password)."""
    text = stderr
    for name, url in overrides.items():
        text = text.replace(url, f"<{name} on wheelyard>")
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(lines[-_MESSAGE_LINES:])
