"""Installing into a build's environments: uv, from wheels only, from the configured upstream index,
in the installer's sandbox (network, but neither the data directory nor the worker's secrets)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from builder.build_requirements import install_command
from builder.config import Settings
from builder.errors import StepFailed
from builder.sandbox import Sandbox, build_environment, interpreter_paths
from builder.secrets import secret_paths


class _Log(Protocol):
    """The build's log (``builder.build_output.BuildLog``): what the sandbox writes, and lines of the worker's."""

    def write(self, data: bytes) -> None: ...

    def line(self, text: str) -> None: ...


def install_requirements(
    settings: Settings,
    workdir: Path,
    log: _Log,
    python: Path,
    requirements: Sequence[str],
    listing: Path,
    find_links: Path | None = None,
    options: Sequence[str] = (),
) -> None:
    """Install ``requirements`` into the environment of ``python``, from wheels only, from the
    upstream index (and ``find_links``), in the installer's sandbox. They go through ``listing``,
    a file the sandbox reads: none is an argument. ``options`` are the worker's own (constraints,
    an upload date), never a build's."""
    listing.write_text("".join(f"{r}\n" for r in requirements))
    os.chmod(listing, 0o644)
    cmd = install_command(
        uv_binary(),
        python,
        listing,
        index_url=settings.upstream_index,
        cache_dir=workdir / "uv-cache",
        find_links=find_links,
        options=options,
    )
    log.line("$ " + " ".join(cmd) + "  # " + ", ".join(requirements))
    certs = {k: os.environ[k] for k in ("SSL_CERT_FILE", "SSL_CERT_DIR") if k in os.environ}
    installer_sandbox(settings, workdir, log, python).run(cmd, cwd=str(listing.parent), extra_environ=certs)


def installer_sandbox(settings: Settings, workdir: Path, log: _Log, python: Path) -> Sandbox:
    """Where uv installs into the environment of ``python``: a sandbox with the network (it
    downloads from the upstream index) but without the data directory, the worker's secrets or a
    way to write anything but that environment and the build's own uv cache (a shared cache
    would let one build plant files in the next one's environments)."""
    cache = workdir / "uv-cache"
    cache.mkdir(exist_ok=True)
    return Sandbox(
        limits=settings.limits,
        workdir=workdir,
        log=log,
        enabled=settings.sandbox,
        read_only=interpreter_paths(str(python)),
        env=build_environment(),
        hidden=[settings.data_dir, *secret_paths(os.environ)],
        writable=[python.parent.parent, cache],
        network=True,
    )


def uv_binary() -> str:
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found:
            return found
        raise StepFailed("uv is not installed on this worker", "pip install uv") from None
