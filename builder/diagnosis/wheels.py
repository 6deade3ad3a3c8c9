"""Platforms: the machine's own remedy platform, and which upstream wheels fit a log's interpreter."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

from packaging.tags import Tag, compatible_tags, cpython_tags, mac_platforms
from packaging.utils import parse_wheel_filename


def os_of(plat: str) -> str:
    return plat if plat in ("macos", "windows") else "linux"


def host_platform() -> str:
    """The remedy platform of the machine we run on."""
    if sys.platform == "darwin":
        return "macos"
    if sys.platform.startswith("win"):
        return "windows"
    try:
        text = Path("/etc/os-release").read_text("utf-8", "replace").lower()
    except OSError:
        return "debian"
    ids = " ".join(line.split("=", 1)[1] for line in text.splitlines() if line.startswith(("id=", "id_like=")))
    if "alpine" in ids:
        return "alpine"
    if any(x in ids for x in ("fedora", "rhel", "centos", "rocky", "alma")):
        return "fedora"
    return "debian"


def _supported_tags(python: str | None, os_name: str, arch: str | None) -> set[Tag] | None:
    if python is None or os_name == "unknown":
        return None
    try:
        major, minor = (int(x) for x in python.split(".")[:2])
    except ValueError:
        return None
    if os_name == "linux":
        a = {"amd64": "x86_64", "arm64": "aarch64"}.get(arch or "x86_64", arch or "x86_64")
        plats = [f"manylinux_2_{m}_{a}" for m in range(60, 4, -1)]
        plats += [f"manylinux2014_{a}", f"manylinux2010_{a}", f"manylinux1_{a}"]
        plats += [f"musllinux_1_{m}_{a}" for m in range(3, -1, -1)] + [f"linux_{a}"]
    elif os_name == "macos":
        a = "arm64" if arch in ("arm64", "aarch64") else "x86_64"
        plats = list(mac_platforms((15, 0), a))
    else:
        plats = ["win32"] if arch == "win32" else ["win_amd64"]
    tags = set(cpython_tags((major, minor), platforms=plats))
    tags |= set(compatible_tags((major, minor), platforms=plats))
    return tags


def fitting_wheels(files: Iterable[str], python: str | None, os_name: str, arch: str | None) -> list[str]:
    """The wheel filenames among ``files`` that install on the given interpreter/platform."""
    supported = _supported_tags(python, os_name, arch)
    if supported is None:
        from packaging.tags import sys_tags

        supported = set(sys_tags())
    out = []
    for f in files:
        try:
            _, _, _, tags = parse_wheel_filename(f)
        except Exception:
            continue
        if tags & supported:
            out.append(f)
    return out
