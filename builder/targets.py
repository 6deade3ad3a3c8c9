"""Build targets: cibuildwheel's build identifiers, parsed, validated and mapped to wheel tags.

A build identifier names an interpreter and a platform (``cp312-manylinux_x86_64``,
``cp314t-musllinux_aarch64`` for a free-threaded CPython); ``py3-none-any`` names the
pure-Python wheel that every platform installs. The identifiers that exist are cibuildwheel's
own list (its ``build-platforms.toml``), read once, so that a cibuildwheel upgrade brings new
CPythons and platforms; wheelyard takes the CPython ones on Linux, macOS and Windows. Patterns
are cibuildwheel's selectors (``cp31{2,3}-manylinux_x86_64``, ``*-musllinux_*``), matched by
cibuildwheel's own ``selector_matches``. The tags a target accepts come from ``packaging.tags``,
so "does this wheel fit" is answered by the same code pip uses.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources

from packaging.tags import Tag, compatible_tags, cpython_tags, mac_platforms

from builder.errors import InvalidTarget

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PURE = "py3-none-any"

# The most targets one pattern may name: a stray `*` must not queue hundreds of builds.
MAX_EXPANSION = 64
# The queue every worker serves: builds that only mirror an upstream wheel (no compiler needed).
MIRROR_QUEUE = "wheelyard.mirror"

# ASCII only: \d would also take other scripts' digits, which int() then reads as numbers.
_IDENTIFIER = re.compile(r"cp3(?P<minor>[0-9]{1,2})(?P<threading>t?)-(?P<platform>[a-z0-9_]+)", re.ASCII)
_PATTERN_CHARS = frozenset("*?[]{}")

# Deployment targets cibuildwheel builds macOS wheels for; a wheel for an older macOS fits too.
_MACOS_DEPLOYMENT = {"x86_64": (10, 13), "arm64": (11, 0), "universal2": (10, 13)}
_WINDOWS_ARCH = {"win_amd64": "AMD64", "win32": "x86", "win_arm64": "ARM64"}
# manylinux2014 covers these; manylinux2010 and manylinux1 only the two x86 ones (PEP 599, 571, 513).
_MANYLINUX2014_ARCHES = frozenset({"x86_64", "i686", "aarch64", "armv7l", "ppc64le", "s390x"})


def _platform_facts(platform: str) -> tuple[str, str, str | None] | None:
    """(operating system, architecture, libc) of one of cibuildwheel's platform ids; None for the
    platforms wheelyard does not build for (iOS, Android, Pyodide)."""
    family, _, arch = platform.partition("_")
    if family == "manylinux":
        return ("linux", arch, "glibc")
    if family == "musllinux":
        return ("linux", arch, "musl")
    if family == "macosx":
        return ("macos", arch, None)
    if platform in _WINDOWS_ARCH:
        return ("windows", _WINDOWS_ARCH[platform], None)
    return None


@functools.cache
def known_identifiers() -> frozenset[str]:
    """cibuildwheel's CPython build identifiers on the platforms wheelyard builds for."""
    text = resources.files("cibuildwheel").joinpath("resources", "build-platforms.toml").read_text()
    found: set[str] = set()
    for platform in tomllib.loads(text).values():
        for config in platform.get("python_configurations", []):
            identifier = str(config["identifier"])
            match = _IDENTIFIER.fullmatch(identifier)
            if match and _platform_facts(match["platform"]) is not None:
                found.add(identifier)
    return frozenset(found)


@functools.cache
def _known_platforms() -> dict[str, tuple[str, str, str | None]]:
    platforms = {identifier.split("-", 1)[1] for identifier in known_identifiers()}
    return {p: facts for p in sorted(platforms) if (facts := _platform_facts(p)) is not None}


@functools.cache
def _known_minors() -> range:
    minors = sorted({int(m["minor"]) for i in known_identifiers() if (m := _IDENTIFIER.fullmatch(i))})
    return range(minors[0], minors[-1] + 1)


# Read from cibuildwheel once, at import: a few hundred lines of TOML.
PLATFORMS: dict[str, tuple[str, str, str | None]] = _known_platforms()
SUPPORTED_MINORS: range = _known_minors()


@dataclass(frozen=True, order=True)
class BuildTarget:
    """One interpreter on one platform, or the pure-Python target (``python`` is None)."""

    python: tuple[int, int] | None
    platform: str
    free_threaded: bool = False

    @classmethod
    def parse(cls, identifier: str) -> BuildTarget:
        text = identifier.strip()
        if text == PURE:
            return cls(None, "any")
        match = _IDENTIFIER.fullmatch(text)
        if not match:
            raise InvalidTarget(
                f"{identifier!r} is not a build identifier",
                "use cibuildwheel's names: cpXY-PLATFORM (for example cp312-manylinux_x86_64, cp314t-... for "
                f"free-threaded CPython) or {PURE} for a pure-Python wheel; "
                f"platforms: {', '.join(_known_platforms())}",
            )
        if text not in known_identifiers():
            platform, minors = match["platform"], _known_minors()
            if platform not in _known_platforms():
                raise InvalidTarget(
                    f"{identifier!r} names an unknown platform {platform!r}",
                    f"known platforms: {', '.join(_known_platforms())}",
                )
            raise InvalidTarget(
                f"{identifier!r} names a CPython that cibuildwheel does not build for on {platform}",
                f"use cp3{minors.start} to cp3{minors.stop - 1} (cibuildwheel's list; "
                f"free-threaded builds end in t where cibuildwheel has them)",
            )
        return cls((3, int(match["minor"])), match["platform"], bool(match["threading"]))

    @property
    def identifier(self) -> str:
        if self.python is None:
            return PURE
        return f"cp{self.python[0]}{self.python[1]}{'t' if self.free_threaded else ''}-{self.platform}"

    def __str__(self) -> str:
        return self.identifier

    @property
    def is_pure(self) -> bool:
        return self.python is None

    @property
    def queue(self) -> str:
        """The Celery queue that carries this target's builds: only workers that can build it listen."""
        return f"wheelyard.{self.identifier}"

    def _facts(self) -> tuple[str, str, str | None] | None:
        return None if self.is_pure else _known_platforms()[self.platform]

    @property
    def os(self) -> str | None:
        facts = self._facts()
        return None if facts is None else facts[0]

    @property
    def arch(self) -> str | None:
        facts = self._facts()
        return None if facts is None else facts[1]

    @property
    def libc(self) -> str | None:
        facts = self._facts()
        return None if facts is None else facts[2]

    @property
    def python_version(self) -> str | None:
        return None if self.python is None else f"{self.python[0]}.{self.python[1]}"

    @property
    def abi(self) -> str | None:
        """The interpreter's own ABI tag (``cp313``, ``cp313t``)."""
        if self.python is None:
            return None
        return f"cp{self.python[0]}{self.python[1]}{'t' if self.free_threaded else ''}"

    def platform_tags(self, *, glibc_max: tuple[int, int] = (2, 28), musl_max: tuple[int, int] = (1, 2)) -> list[str]:
        """Platform tags a wheel for this target may carry, most specific first."""
        facts = self._facts()
        if facts is None:
            return ["any"]
        osname, arch, libc = facts
        if libc == "glibc":
            tags = [f"manylinux_{glibc_max[0]}_{m}_{arch}" for m in range(glibc_max[1], 4, -1)]
            legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
            for minor, alias in legacy.items():
                fits = arch in _MANYLINUX2014_ARCHES if minor == 17 else arch in {"x86_64", "i686"}
                if minor <= glibc_max[1] and fits:
                    tags.append(f"{alias}_{arch}")
            return tags
        if libc == "musl":
            return [f"musllinux_{musl_max[0]}_{m}_{arch}" for m in range(musl_max[1], 0, -1)]
        if osname == "macos":
            return list(mac_platforms(_MACOS_DEPLOYMENT[arch], arch))
        return [self.platform]

    def compatible_tags(self, **limits: tuple[int, int]) -> list[Tag]:
        """Every tag that installs on this target, in pip's order of preference."""
        if self.python is None or self.abi is None:
            return [Tag("py3", "none", "any")]
        platforms = self.platform_tags(**limits)
        # The ABI is named, not taken from the interpreter running this code.
        tags = list(cpython_tags(self.python, abis=[self.abi], platforms=platforms))
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


def is_pattern(text: str) -> bool:
    return any(c in _PATTERN_CHARS for c in text)


def expand_pattern(pattern: str) -> list[BuildTarget]:
    """The build identifiers a cibuildwheel selector pattern matches, in a stable order."""
    from cibuildwheel.selector import selector_matches

    text = pattern.strip()
    found = sorted(BuildTarget.parse(i) for i in known_identifiers() if selector_matches(text, i))
    matched = [t.identifier for t in found]
    if text != PURE and selector_matches(text, PURE):
        matched.append(PURE)
    if not matched:
        raise InvalidTarget(
            f"the pattern {pattern!r} matches no build identifier",
            "patterns are cibuildwheel's selectors, e.g. cp31{2,3}-manylinux_x86_64 or cp313-*linux_x86_64; "
            "`cibuildwheel --print-build-identifiers` lists the identifiers",
        )
    if len(matched) > MAX_EXPANSION:
        raise InvalidTarget(
            f"the pattern {pattern!r} matches {len(matched)} build identifiers, more than {MAX_EXPANSION}",
            "narrow it to the interpreters and platforms the team installs on, e.g. cp31{2,3}-manylinux_x86_64",
        )
    return [BuildTarget.parse(i) for i in matched]


def parse_targets(identifiers: Iterable[str]) -> list[BuildTarget]:
    """Parse build identifiers and selector patterns, de-duplicated, keeping their order."""
    seen: dict[BuildTarget, None] = {}
    for identifier in identifiers:
        targets = expand_pattern(identifier) if is_pattern(identifier) else [BuildTarget.parse(identifier)]
        for target in targets:
            seen.setdefault(target, None)
    if not seen:
        raise InvalidTarget("no build identifier was given", "name at least one, e.g. cp312-manylinux_x86_64")
    if len(seen) > MAX_EXPANSION:
        raise InvalidTarget(
            f"{len(seen)} build identifiers were named, more than {MAX_EXPANSION}",
            "ask for the targets in several requests, or narrow the patterns",
        )
    return list(seen)


def split_target_list(text: str) -> list[str]:
    """A comma-separated list of identifiers and patterns; commas inside ``{...}`` belong to a pattern."""
    items, depth, current = [], 0, ""
    for char in text:
        depth += (char == "{") - (char == "}")
        if char == "," and depth <= 0:
            items.append(current)
            current = ""
        else:
            current += char
    items.append(current)
    return [item.strip() for item in items if item.strip()]
