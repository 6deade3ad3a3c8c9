"""The worker's Rust toolchain: found the way its interpreters are, and given to builds.

rustup installs proxies (``~/.cargo/bin/cargo`` is rustup itself) that choose a toolchain from
``RUSTUP_HOME``, else ``$HOME/.rustup``: run with another ``HOME`` (a service user, a unit that
sets its own) they fail. So the worker looks for a toolchain's own ``cargo`` and ``rustc``, and
a build gets that directory first on its ``PATH`` (bound read-only into the sandbox): no proxy,
and nothing depends on the worker's or the build's ``HOME``. In this order:

1. ``rust_toolchain`` (``WHEELYARD_RUST_TOOLCHAIN``): a directory holding ``cargo`` and ``rustc``;
   only that one when it is set;
2. rustup's toolchains (``RUSTUP_TOOLCHAIN``, else the default of rustup's ``settings.toml``, else
   ``stable``) under ``$RUSTUP_HOME``, then beside each cargo home (``$CARGO_HOME``, ``~/.cargo``,
   a ``.cargo/bin`` directory on ``PATH``, then that of the worker's user if ``HOME`` is another);
3. ``cargo`` and ``rustc`` on ``PATH`` or in a cargo home that are not rustup proxies (a
   distribution's packages, a toolchain unpacked by hand).

The worker's capabilities (builder/capabilities.py) report the versions of these same binaries.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from builder.config import Settings
from builder.errors import ConfigurationError
from builder.sandbox.environment import DEFAULT_PATH

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

TOOLS = ("cargo", "rustc")
_PROXY_NAMES = ("rustup", "rustup-init")


@dataclass(frozen=True)
class RustToolchain:
    """A directory holding a toolchain's own ``cargo`` and ``rustc`` (not rustup's proxies)."""

    bin_dir: Path

    def executable(self, name: str) -> Path:
        return self.bin_dir / name

    def paths(self) -> tuple[Path, ...]:
        """What a build needs of the host to run it: ``bin_dir`` and the prefix of the real cargo and
        rustc (``bin``, and the ``lib`` rustc finds its standard library in), links followed."""
        prefixes = {Path(os.path.realpath(self.executable(name))).parent.parent for name in TOOLS}
        return (self.bin_dir, *sorted(prefixes))


@dataclass(frozen=True)
class RustForBuild:
    """What a build gets of Rust: variables for its environment and host paths bound read-only."""

    environment: dict[str, str]
    read_only: tuple[Path, ...]


def find_rust_toolchain(
    configured: Path | None = None, environ: Mapping[str, str] | None = None
) -> RustToolchain | None:
    """The worker's Rust toolchain (see the module doc), or None when it has none.

    Raises ``invalid-configuration`` when ``configured`` does not hold cargo and rustc."""
    env = os.environ if environ is None else environ
    if configured is not None:
        found = _toolchain_in(Path(configured))
        if found is None:
            raise ConfigurationError(
                f"WHEELYARD_RUST_TOOLCHAIN={configured} holds no cargo and rustc of a toolchain",
                "name a toolchain's bin directory (e.g. ~/.rustup/toolchains/stable-x86_64-unknown-linux-gnu/bin, "
                "or /usr/bin for a distribution's packages), or unset it to let the worker find one",
            )
        return found
    for rustup_home in _rustup_homes(env):
        found = _rustup_toolchain(rustup_home, env.get("RUSTUP_TOOLCHAIN"))
        if found is not None:
            return found
    for directory in _bin_dirs(env):
        found = _toolchain_in(directory)
        if found is not None:
            return found
    return None


def _toml_string(text: str) -> str:
    """``text`` as a TOML basic string: a JSON string is one (quotes, backslashes and control
    characters escaped), so any directory name reaches cargo as it is."""
    return json.dumps(text)


def rust_for_build(settings: Settings, cargo_home: Path) -> RustForBuild:
    """The toolchain first on ``PATH``; with ``cargo_vendor_dir`` set, ``cargo_home`` (made here,
    inside the build's work directory) with a config.toml that replaces crates.io by the vendored
    crates. cargo reads a source replacement from a config file only, not from variables."""
    environment: dict[str, str] = {}
    read_only: list[Path] = []
    if settings.cargo_vendor_dir is not None:
        cargo_home.mkdir(exist_ok=True)
        (cargo_home / "config.toml").write_text(
            '[source.crates-io]\nreplace-with = "vendored-sources"\n\n'
            f"[source.vendored-sources]\ndirectory = {_toml_string(str(settings.cargo_vendor_dir))}\n\n"
            "[net]\noffline = true\n"
        )
        environment["CARGO_HOME"] = str(cargo_home)
        read_only.append(Path(settings.cargo_vendor_dir))
    toolchain = find_rust_toolchain(settings.rust_toolchain)
    if toolchain is not None:
        environment["PATH"] = f"{toolchain.bin_dir}{os.pathsep}{settings.build_path or DEFAULT_PATH}"
        read_only += toolchain.paths()
    return RustForBuild(environment, tuple(read_only))


def _is_proxy(path: Path) -> bool:
    return Path(os.path.realpath(path)).name in _PROXY_NAMES


def _toolchain_in(directory: Path) -> RustToolchain | None:
    """``directory`` as a toolchain: its cargo and rustc exist, run, and are not proxies."""
    for name in TOOLS:
        exe = directory / name
        if not (exe.is_file() and os.access(exe, os.X_OK)) or _is_proxy(exe):
            return None
    return RustToolchain(Path(os.path.abspath(directory)))


def _user_home() -> list[Path]:
    """The home of the worker's user, which differs from ``$HOME`` for a service that sets its own."""
    with contextlib.suppress(KeyError):
        return [Path(pwd.getpwuid(os.geteuid()).pw_dir)]
    return []


def _cargo_homes(env: Mapping[str, str]) -> list[Path]:
    """What the environment names first (``CARGO_HOME``, ``~/.cargo``, ``.cargo/bin`` on PATH),
    then the cargo home of the worker's user."""
    found = [Path(env["CARGO_HOME"])] if env.get("CARGO_HOME") else []
    found += [Path(env["HOME"]) / ".cargo"] if env.get("HOME") else []
    for entry in env.get("PATH", "").split(os.pathsep):
        path = Path(entry)
        if entry and path.name == "bin" and path.parent.name == ".cargo":
            found.append(path.parent)
    return _unique([*found, *(home / ".cargo" for home in _user_home())])


def _rustup_homes(env: Mapping[str, str]) -> list[Path]:
    """``RUSTUP_HOME``, then rustup's home beside each cargo home (rustup installs both in one home)."""
    found = [Path(env["RUSTUP_HOME"])] if env.get("RUSTUP_HOME") else []
    found += [cargo_home.parent / ".rustup" for cargo_home in _cargo_homes(env)]
    return _unique(found)


def _bin_dirs(env: Mapping[str, str]) -> list[Path]:
    found = [Path(entry) for entry in env.get("PATH", "").split(os.pathsep) if entry]
    found += [cargo_home / "bin" for cargo_home in _cargo_homes(env)]
    return _unique(found)


def _unique(paths: list[Path]) -> list[Path]:
    seen: set[str] = set()
    out: list[Path] = []
    for path in paths:
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            out.append(path)
    return out


def _rustup_toolchain(rustup_home: Path, wanted: str | None) -> RustToolchain | None:
    """The toolchain rustup would choose under ``rustup_home``: ``wanted``, else its default."""
    toolchains = rustup_home / "toolchains"
    if not toolchains.is_dir():
        return None
    for name in _toolchain_names(rustup_home, wanted):
        # A channel alone ("stable") names the toolchain of that channel for any host triple.
        for candidate in (toolchains / name, *sorted(toolchains.glob(f"{name}-*"))):
            found = _toolchain_in(candidate / "bin")
            if found is not None:
                return found
    return None


def _toolchain_names(rustup_home: Path, wanted: str | None) -> Iterator[str]:
    if wanted:
        yield wanted
        return
    with contextlib.suppress(OSError, tomllib.TOMLDecodeError):
        default = tomllib.loads((rustup_home / "settings.toml").read_text()).get("default_toolchain")
        if isinstance(default, str) and default:
            yield default
    yield "stable"
