"""The build identifier of a pip or uv client, from the JSON its ``User-Agent`` carries.

pip sends ``pip/26.3 {"implementation": {"name": "CPython", ...}, "python": "3.11.7",
"system": {"name": "Linux"}, "cpu": "x86_64", "distro": {"libc": {"lib": "glibc"}}}``
(pip's linehaul data); uv sends ``uv/0.13.9 {...}`` with the same keys. Anything else
(another client, a truncated or hostile header) has no target: demand from it is ignored.

pip names the libc only when it finds glibc, so a Linux pip without one runs on musl; uv
names ``musl`` itself.
"""

from __future__ import annotations

import json
import re
from typing import Any

from builder.errors import InvalidTarget
from builder.targets import BuildTarget

# Longer than any real one (about 500 bytes); a longer header is not parsed at all.
MAX_USER_AGENT = 4096
_CLIENT = re.compile(r"(?P<installer>pip|uv)/[0-9][0-9A-Za-z.+!-]*\s+(?P<data>\{.*\})\s*", re.ASCII | re.DOTALL)

# (system name, cpu) -> the platform of a build identifier; None: decided by the libc.
_PLATFORMS: dict[tuple[str, str], str | None] = {
    ("Linux", "x86_64"): None,
    ("Linux", "aarch64"): "manylinux_aarch64",
    ("Darwin", "x86_64"): "macosx_x86_64",
    ("Darwin", "arm64"): "macosx_arm64",
    ("Windows", "AMD64"): "win_amd64",
}


def client_target(user_agent: str | None) -> BuildTarget | None:
    """The build identifier the client installs for, or None when the header does not say."""
    if not user_agent or len(user_agent) > MAX_USER_AGENT:
        return None
    match = _CLIENT.fullmatch(user_agent.strip())
    if match is None:
        return None
    try:
        data = json.loads(match["data"])
    except ValueError:
        return None
    return target_from_linehaul(data) if isinstance(data, dict) else None


def target_from_linehaul(data: dict[str, Any]) -> BuildTarget | None:
    """The build identifier that pip's/uv's linehaul data describes (CPython only)."""
    implementation = _mapping(data.get("implementation"))
    if implementation.get("name") != "CPython":
        return None
    python = _minor(data.get("python")) or _minor(implementation.get("version"))
    system = _mapping(data.get("system")).get("name")
    cpu = data.get("cpu")
    if python is None or not isinstance(system, str) or not isinstance(cpu, str):
        return None
    if (system, cpu) not in _PLATFORMS:
        return None
    platform = _PLATFORMS[(system, cpu)] or _linux_x86_64(data)
    try:
        return BuildTarget.parse(f"cp{python[0]}{python[1]}-{platform}")
    except InvalidTarget:
        return None  # a CPython wheelyard does not build for (3.7, 3.15, ...)


def _linux_x86_64(data: dict[str, Any]) -> str:
    libc = _mapping(_mapping(data.get("distro")).get("libc")).get("lib")
    return "manylinux_x86_64" if libc == "glibc" else "musllinux_x86_64"


def _minor(value: Any) -> tuple[int, int] | None:
    if not isinstance(value, str):
        return None
    match = re.match(r"([0-9]{1,2})\.([0-9]{1,3})", value, re.ASCII)
    return (int(match[1]), int(match[2])) if match else None


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
