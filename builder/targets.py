"""Build targets: cibuildwheel's build identifiers, parsed, validated and mapped to wheel tags.

A build identifier names an interpreter and a platform (``cp312-manylinux_x86_64``);
``py3-none-any`` names the pure-Python wheel that every platform installs. The tags a
target accepts come from ``packaging.tags`` so that "does this wheel fit" is answered by
the same code pip uses.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

from packaging.tags import Tag, compatible_tags, cpython_tags, mac_platforms

from builder.errors import InvalidTarget

PURE = "py3-none-any"

# platform id -> (operating system, architecture, libc)
PLATFORMS: dict[str, tuple[str, str, str | None]] = {
    "manylinux_x86_64": ("linux", "x86_64", "glibc"),
    "manylinux_aarch64": ("linux", "aarch64", "glibc"),
    "musllinux_x86_64": ("linux", "x86_64", "musl"),
    "macosx_x86_64": ("macos", "x86_64", None),
    "macosx_arm64": ("macos", "arm64", None),
    "win_amd64": ("windows", "AMD64", None),
}

# CPython minors a build identifier may name (cibuildwheel's supported range).
SUPPORTED_MINORS = range(8, 15)

# Deployment targets cibuildwheel builds macOS wheels for; a wheel for an older macOS fits too.
_MACOS_DEPLOYMENT = {"x86_64": (10, 13), "arm64": (11, 0)}

# ASCII only: \d would also take other scripts' digits, which int() then reads as numbers.
_IDENTIFIER = re.compile(r"cp3(?P<minor>[0-9]{1,2})-(?P<platform>[a-z0-9_]+)", re.ASCII)


@dataclass(frozen=True, order=True)
class BuildTarget:
    """One interpreter on one platform, or the pure-Python target (``python`` is None)."""

    python: tuple[int, int] | None
    platform: str

    @classmethod
    def parse(cls, identifier: str) -> BuildTarget:
        text = identifier.strip()
        if text == PURE:
            return cls(None, "any")
        match = _IDENTIFIER.fullmatch(text)
        if not match:
            raise InvalidTarget(
                f"{identifier!r} is not a build identifier",
                "use cibuildwheel's names: cpXY-PLATFORM (for example cp312-manylinux_x86_64) "
                f"or {PURE} for a pure-Python wheel; platforms: {', '.join(PLATFORMS)}",
            )
        minor = int(match["minor"])
        platform = match["platform"]
        if platform not in PLATFORMS:
            raise InvalidTarget(
                f"{identifier!r} names an unknown platform {platform!r}",
                f"known platforms: {', '.join(PLATFORMS)}",
            )
        if minor not in SUPPORTED_MINORS:
            raise InvalidTarget(
                f"{identifier!r} names CPython 3.{minor}, which wheelyard does not build for",
                f"use cp3{SUPPORTED_MINORS.start} to cp3{SUPPORTED_MINORS.stop - 1}",
            )
        return cls((3, minor), platform)

    @property
    def identifier(self) -> str:
        if self.python is None:
            return PURE
        return f"cp{self.python[0]}{self.python[1]}-{self.platform}"

    def __str__(self) -> str:
        return self.identifier

    @property
    def is_pure(self) -> bool:
        return self.python is None

    @property
    def queue(self) -> str:
        """The Celery queue that carries this target's builds: only workers that can build it listen."""
        return f"wheelyard.{self.identifier}"

    @property
    def os(self) -> str | None:
        return None if self.is_pure else PLATFORMS[self.platform][0]

    @property
    def arch(self) -> str | None:
        return None if self.is_pure else PLATFORMS[self.platform][1]

    @property
    def libc(self) -> str | None:
        return None if self.is_pure else PLATFORMS[self.platform][2]

    @property
    def python_version(self) -> str | None:
        return None if self.python is None else f"{self.python[0]}.{self.python[1]}"

    def platform_tags(self, *, glibc_max: tuple[int, int] = (2, 28), musl_max: tuple[int, int] = (1, 2)) -> list[str]:
        """Platform tags a wheel for this target may carry, most specific first."""
        if self.is_pure:
            return ["any"]
        osname, arch, libc = PLATFORMS[self.platform]
        if libc == "glibc":
            tags = [f"manylinux_{glibc_max[0]}_{m}_{arch}" for m in range(glibc_max[1], 4, -1)]
            legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
            for minor, alias in legacy.items():
                if (
                    minor <= glibc_max[1]
                    and (alias != "manylinux2010" or arch == "x86_64")
                    and (alias != "manylinux1" or arch == "x86_64")
                ):
                    tags.append(f"{alias}_{arch}")
            return tags
        if libc == "musl":
            return [f"musllinux_{musl_max[0]}_{m}_{arch}" for m in range(musl_max[1], 0, -1)]
        if osname == "macos":
            return list(mac_platforms(_MACOS_DEPLOYMENT[arch], arch))
        return ["win_amd64"]

    def compatible_tags(self, **limits: tuple[int, int]) -> list[Tag]:
        """Every tag that installs on this target, in pip's order of preference."""
        if self.python is None:
            return [Tag("py3", "none", "any")]
        platforms = self.platform_tags(**limits)
        tags = list(cpython_tags(self.python, platforms=platforms))
        interpreter = f"cp{self.python[0]}{self.python[1]}"
        tags += list(compatible_tags(self.python, interpreter, platforms))
        return tags

    def accepts(self, wheel_tags: Iterable[Tag], **limits: tuple[int, int]) -> bool:
        return self.preference(wheel_tags, **limits) is not None

    def preference(self, wheel_tags: Iterable[Tag], **limits: tuple[int, int]) -> int | None:
        """Rank of the best tag of a wheel for this target (lower is better), None if it does not fit."""
        ranks = _tag_ranks(self, tuple(sorted(limits.items())))
        found = [ranks[t] for t in wheel_tags if t in ranks]
        return min(found) if found else None


@functools.lru_cache(maxsize=256)
def _tag_ranks(target: BuildTarget, limits: tuple[tuple[str, tuple[int, int]], ...]) -> dict[Tag, int]:
    """Tag -> preference, computed once per target and limits (the tag lists run to hundreds)."""
    return {tag: i for i, tag in enumerate(target.compatible_tags(**dict(limits)))}


def parse_targets(identifiers: Iterable[str]) -> list[BuildTarget]:
    """Parse and de-duplicate a list of build identifiers, keeping their order."""
    seen: dict[BuildTarget, None] = {}
    for identifier in identifiers:
        seen.setdefault(BuildTarget.parse(identifier), None)
    if not seen:
        raise InvalidTarget("no build identifier was given", "name at least one, e.g. cp312-manylinux_x86_64")
    return list(seen)
