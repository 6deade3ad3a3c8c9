"""What a build's environment holds: made from scratch, never inherited from the worker, and
without anything that looks like a secret (builder/secrets.py says what does)."""

from __future__ import annotations

from collections.abc import Mapping

from builder.secrets import is_secret_variable
from builder.tools import SYSTEM_PATH

BUILD_UID = 65534  # nobody
BUILD_GID = 65534  # nogroup
BUILD_HOME = "/home/build"
DEFAULT_PATH = SYSTEM_PATH


def build_environment(
    extra: Mapping[str, str] | None = None,
    *,
    home: str = BUILD_HOME,
    path: str = DEFAULT_PATH,
) -> dict[str, str]:
    """The base environment of a build, made from scratch (nothing is inherited from the worker).

    ``extra`` adds variables (a compiler flag, a ``PATH`` with a toolchain first, a ``CARGO_HOME``
    whose config.toml points cargo at vendored crates); secrets are refused there too. cargo is
    always offline.
    """
    env = {
        "PATH": path,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": home,
        "TMPDIR": "/tmp",
        "USER": "build",
        "LOGNAME": "build",
        "SHELL": "/bin/sh",
        "CARGO_HOME": f"{home}/.cargo",
        "CARGO_NET_OFFLINE": "true",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    for name, value in (extra or {}).items():
        if is_secret_variable(name, value):
            raise ValueError(f"refusing to pass {name} to a build: it looks like a secret")
        env[name] = value
    return env


def without_secrets(variables: Mapping[str, str] | None) -> dict[str, str]:
    """``variables`` less those that look like a secret (what ``build`` passes to a hook, say)."""
    return {k: v for k, v in (variables or {}).items() if not is_secret_variable(k, v)}
