"""Builds through cibuildwheel, for the hosts where wheelyard's own Linux pipeline does not apply.

A macOS or Windows worker cannot repair a wheel with auditwheel, and publishing its wheel
unrepaired would hand clients a wheel that needs libraries they do not have. cibuildwheel
builds there natively and repairs with delocate (macOS) or delvewheel (Windows), so such a
worker runs ``cibuildwheel --only IDENTIFIER --output-dir OUT SDIST`` instead of the
build and repair steps; the wheel it writes then goes through the same verify, prove and
publish steps as any other.

cibuildwheel reads options from the project's ``pyproject.toml`` and from ``CIBW_*``
variables, and some of those options are shell commands (``before-all``, ``test-command``,
``repair-wheel-command``). A stranger's sdist must not choose what the worker runs, so the
worker hands cibuildwheel a configuration file of its own (``--config-file``, which replaces
the project's ``[tool.cibuildwheel]``) and an environment without any ``CIBW_*`` variable
but the ones it sets.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from builder.buildlog import BuildLog
from builder.errors import CibuildwheelFailed
from builder.secrets import is_secret_variable
from builder.targets import BuildTarget
from builder.tools import run_tool

# What the worker's configuration sets, and why: build (not pip wheel) as the front end, as the
# Linux pipeline does; no test command (the proof step imports the wheel on its own terms);
# verbose output, so the diagnosis sees the compiler's lines; the default repair commands.
_CONFIG = """\
[tool.cibuildwheel]
build-frontend = "build"
build-verbosity = 1
test-command = ""
before-all = ""
before-build = ""
environment = {{ {environment} }}
"""


def uses_cibuildwheel(target: BuildTarget) -> bool:
    """Targets whose wheels only cibuildwheel builds and repairs here: macOS and Windows."""
    return target.os in ("macos", "windows")


def write_config(path: Path, environment: Mapping[str, str]) -> Path:
    """The worker's own cibuildwheel configuration, with ``environment`` for every build."""
    pairs = ", ".join(f"{_toml_key(k)} = {_toml_string(v)}" for k, v in sorted(environment.items()))
    path.write_text(_CONFIG.format(environment=pairs))
    return path


def _toml_key(key: str) -> str:
    if not key.replace("_", "").isalnum():
        raise ValueError(f"not an environment variable name: {key!r}")
    return key


def _toml_string(value: str) -> str:
    # cibuildwheel puts each value in double quotes and expands it as a shell word: the worker's
    # values (job counts, paths) are plain, and anything that would expand is refused.
    if any(c in value for c in "$`\\\"'"):
        raise ValueError(f"not a plain value for cibuildwheel's environment: {value!r}")
    return f'"{value}"'


@dataclass(frozen=True)
class CibuildwheelBuild:
    """One ``cibuildwheel --only`` run for one target, from one sdist."""

    target: BuildTarget
    sdist: Path
    output_dir: Path
    config_file: Path

    def command(self) -> list[str]:
        """Absolute paths only: in sdist mode cibuildwheel resolves relative ones against the current
        directory. ``-I`` keeps the current directory off ``sys.path``."""
        return [
            sys.executable,
            "-I",
            "-m",
            "cibuildwheel",
            "--only",
            self.target.identifier,
            "--output-dir",
            str(self.output_dir.resolve()),
            "--config-file",
            str(self.config_file.resolve()),
            str(self.sdist.resolve()),
        ]

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        """``base`` without any ``CIBW_*`` variable (the worker's configuration file decides) and
        without the worker's secrets: the build runs natively on these hosts, with this environment."""
        env = {k: v for k, v in base.items() if not k.startswith("CIBW_") and not is_secret_variable(k, v)}
        env["CIBW_CONTAINER_ENGINE"] = env.get("WHEELYARD_CONTAINER_ENGINE", "docker")
        env.pop("WHEELYARD_CONTAINER_ENGINE", None)
        return env

    def built_wheel(self) -> Path:
        """The one wheel cibuildwheel wrote for this target; anything else is a failed build."""
        found = sorted(self.output_dir.glob("*.whl")) if self.output_dir.is_dir() else []
        if len(found) != 1:
            raise CibuildwheelFailed(
                f"cibuildwheel wrote {len(found)} wheels for {self.target} instead of one",
                "the build log shows cibuildwheel's output",
            )
        wheel = found[0]
        try:
            tags = parse_wheel_filename(wheel.name)[3]
        except InvalidWheelFilename:
            raise CibuildwheelFailed(
                f"cibuildwheel wrote {wheel.name!r}, which is not a wheel filename", None
            ) from None
        if not self.target.accepts(tags):
            raise CibuildwheelFailed(
                f"cibuildwheel wrote {wheel.name}, which does not install on {self.target}",
                "check the worker's platform and the deployment target cibuildwheel used",
            )
        return wheel


def build_with_cibuildwheel(
    target: BuildTarget,
    sdist: Path,
    private: Path,
    *,
    base_env: Mapping[str, str],
    build_env: Mapping[str, str],
    log: BuildLog,
    timeout: float,
) -> Path:
    """Run cibuildwheel for ``target`` in the worker's own directory ``private``; return the one
    repaired wheel it wrote there. Its output goes to the build log (redacted, like every tool's)."""
    build = CibuildwheelBuild(
        target, sdist, private / "cibuildwheel-out", write_config(private / "cibuildwheel.toml", build_env)
    )
    log.write(("$ " + " ".join(build.command()) + "\n").encode())
    code, output = run_tool(build.command(), env=build.environment(base_env), cwd=private, timeout=timeout)
    log.write(output)
    if code != 0:
        raise CibuildwheelFailed(
            f"cibuildwheel could not build {target} (exit status {code})",
            "the diagnosis below names the cause; cibuildwheel's output is in the build log",
        )
    return build.built_wheel()
