"""The targets of an ensure: build identifiers and cibuildwheel-style patterns, and what each
one means to a resolver (marker environment, uv's ``--python-version``/``--python-platform``)."""

from __future__ import annotations

from collections.abc import Iterable

from builder.errors import InvalidTarget
from builder.targets import PURE, BuildTarget, parse_targets

# A marker environment per operating system: (sys_platform, platform_system, os_name).
_OS_MARKERS = {
    "linux": ("linux", "Linux", "posix"),
    "macos": ("darwin", "Darwin", "posix"),
    "windows": ("win32", "Windows", "nt"),
}

# uv's --python-platform for the platform ids it resolves for; manylinux at the glibc wheelyard
# mirrors up to.
_UV_PLATFORMS = {
    "manylinux_x86_64": "x86_64-manylinux_{glibc}",
    "manylinux_aarch64": "aarch64-manylinux_{glibc}",
    "musllinux_x86_64": "x86_64-unknown-linux-musl",
    "musllinux_aarch64": "aarch64-unknown-linux-musl",
    "macosx_x86_64": "x86_64-apple-darwin",
    "macosx_arm64": "aarch64-apple-darwin",
    "win_amd64": "x86_64-pc-windows-msvc",
    "win_arm64": "aarch64-pc-windows-msvc",
    "win32": "i686-pc-windows-msvc",
}


def expand_targets(selectors: Iterable[str]) -> list[BuildTarget]:
    """Build identifiers and cibuildwheel-style patterns (``cp31{2,3}-manylinux_x86_64``), as
    ``builder.targets.parse_targets`` reads them; every target must name an interpreter."""
    targets = parse_targets(s for s in selectors if s.strip())
    if any(t.is_pure for t in targets):
        raise InvalidTarget(
            f"{PURE} names no interpreter, and a closure depends on the interpreter",
            "name the interpreters the team installs on, e.g. -t cp312-manylinux_x86_64 (a pattern that "
            f"matches {PURE} too, like '*', is too wide); pure-Python wheels are ensured once for all of them",
        )
    return targets


def marker_environment(target: BuildTarget) -> dict[str, str]:
    """The PEP 508 environment of ``target``'s interpreter, as pip on it would evaluate markers."""
    assert target.python is not None and target.os is not None and target.arch is not None
    sys_platform, system, os_name = _OS_MARKERS[target.os]
    version = f"{target.python[0]}.{target.python[1]}"
    return {
        "implementation_name": "cpython",
        "implementation_version": f"{version}.0",
        "os_name": os_name,
        "platform_machine": target.arch,
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_system": system,
        "platform_version": "",
        "python_full_version": f"{version}.0",
        "python_version": version,
        "sys_platform": sys_platform,
    }


def uv_platform(target: BuildTarget, glibc_max: tuple[int, int]) -> str:
    """uv's --python-platform for ``target``: its wheels are those the target installs."""
    if target.platform not in _UV_PLATFORMS:
        raise InvalidTarget(
            f"uv cannot resolve requirements for {target}'s platform",
            f"resolve for {target} elsewhere and ensure the lock (--lock pylock.toml or uv.lock), "
            f"which is taken as it is; uv resolves for {', '.join(sorted(_UV_PLATFORMS))}",
        )
    return _UV_PLATFORMS[target.platform].format(glibc=f"{glibc_max[0]}_{glibc_max[1]}")
