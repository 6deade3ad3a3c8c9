"""The targets of an ensure: build identifiers and cibuildwheel-style patterns, and what each
one means to a resolver (marker environment, uv's ``--python-version``/``--python-platform``)."""

from __future__ import annotations

from collections.abc import Iterable

from cibuildwheel.selector import selector_matches

from builder.errors import InvalidTarget
from builder.targets import PLATFORMS, PURE, SUPPORTED_MINORS, BuildTarget, parse_targets

_PATTERN_CHARS = set("*?[{")

# A marker environment per operating system: (sys_platform, platform_system, os_name).
_OS_MARKERS = {
    "linux": ("linux", "Linux", "posix"),
    "macos": ("darwin", "Darwin", "posix"),
    "windows": ("win32", "Windows", "nt"),
}

# uv's --python-platform for each platform id; manylinux at the glibc wheelyard mirrors up to.
_UV_PLATFORMS = {
    "manylinux_x86_64": "x86_64-manylinux_{glibc}",
    "manylinux_aarch64": "aarch64-manylinux_{glibc}",
    "musllinux_x86_64": "x86_64-unknown-linux-musl",
    "macosx_x86_64": "x86_64-apple-darwin",
    "macosx_arm64": "aarch64-apple-darwin",
    "win_amd64": "x86_64-pc-windows-msvc",
}


def known_identifiers() -> list[str]:
    """Every interpreter build identifier wheelyard knows, in cibuildwheel's spelling."""
    return [f"cp3{minor}-{platform}" for minor in SUPPORTED_MINORS for platform in PLATFORMS]


def expand_targets(selectors: Iterable[str]) -> list[BuildTarget]:
    """Build identifiers and patterns (``cp31{2,3}-manylinux_x86_64``, ``cp3*-musllinux_*``), each
    pattern matched the way cibuildwheel matches its build selectors; every target names an interpreter."""
    identifiers: list[str] = []
    for selector in selectors:
        text = selector.strip()
        if not text:
            continue
        if not _PATTERN_CHARS & set(text):
            identifiers.append(text)
            continue
        matched = [i for i in known_identifiers() if selector_matches(text, i)]
        if not matched:
            raise InvalidTarget(
                f"the pattern {text!r} matches no build identifier",
                "patterns match names like cp312-manylinux_x86_64, e.g. cp31{2,3}-manylinux_x86_64 or cp3*-musllinux_*",
            )
        identifiers += matched
    targets = parse_targets(identifiers)
    if any(t.is_pure for t in targets):
        raise InvalidTarget(
            f"{PURE} names no interpreter, and a closure depends on the interpreter",
            "name the interpreters the team installs on, e.g. -t cp312-manylinux_x86_64; "
            "pure-Python wheels are ensured once for all of them",
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
    return _UV_PLATFORMS[target.platform].format(glibc=f"{glibc_max[0]}_{glibc_max[1]}")
