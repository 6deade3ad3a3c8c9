"""What a worker advertises beyond its targets, in the names the diagnoses use, and whether that
meets what a failed build needs.

A diagnosis names the capability that would have made a build pass (``tool:fortran``,
``lib:portaudio``, ``tool:rust>=1.70``; see builder/diagnosis/rules.toml). A worker advertises:

* ``tool:NAME`` for every tool it found on the builds' PATH, and ``tool:NAME==VERSION`` where its
  ``--version`` line carries one (so that ``tool:cmake<4`` can be met); the names the rules use
  for a family of tools too (``tool:cc`` for gcc or clang, ``tool:fortran`` for gfortran,
  ``tool:rust`` for cargo);
* ``lib:NAME`` for every library whose development files it has: a pkg-config module, or an
  unversioned ``libNAME.so`` in the linker's directories (the link a ``-dev`` package installs).

Only ``tool:`` capabilities of tools the worker looks for and ``lib:`` capabilities route a
build: more memory, another Python or a build requirement are not what another worker has.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

# The names a rule uses for a family of tools, and the tools that provide it.
TOOL_FAMILIES: Mapping[str, tuple[str, ...]] = {
    "cc": ("gcc", "clang", "cc"),
    "c++": ("g++", "clang++", "c++"),
    "fortran": ("gfortran", "flang", "ifx"),
    "rust": ("cargo", "rustc"),
}

# Beyond builder.capabilities.TOOLS: the tools the rules name that a build finds on PATH.
EXTRA_TOOLS = (
    "clang++",
    "flang",
    "ifx",
    "swig",
    "meson",
    "make",
    "nasm",
    "yasm",
    "protoc",
    "bison",
    "flex",
    "git",
    "patch",
    "autoconf",
    "automake",
    "libtool",
    "pg_config",
    "mysql_config",
    "mariadb_config",
    "gdal-config",
    "geos-config",
    "xml2-config",
    "xslt-config",
    "curl-config",
    "freetype-config",
    "icu-config",
    "net-snmp-config",
)

_NEEDED = re.compile(r"^(?P<kind>[a-z]+):(?P<name>[A-Za-z0-9_.+-]+?)(?P<spec>(?:[<>=!~]=?|===).*)?$")
_VERSION = re.compile(r"\b(\d+\.\d+(?:\.\d+)?)\b")
_PC_SUFFIX = re.compile(r"-?\d+(?:\.\d+)*$")
_LIBRARY_DIRS = ("/usr/local/lib", "/usr/lib", "/usr/lib64", "/lib")


def tool_names(probed: Iterable[str]) -> set[str]:
    """Every tool name a worker may advertise: what it probes for, the extras and the families."""
    return {*probed, *EXTRA_TOOLS, *TOOL_FAMILIES}


def advertised(tools: Mapping[str, str], libraries: Iterable[str] = ()) -> list[str]:
    """The sorted capability names of a worker with ``tools`` (name -> version line) and ``libraries``."""
    names: set[str] = set()
    for tool, line in tools.items():
        names.add(f"tool:{tool}")
        version = _tool_version(line)
        if version is not None:
            names.add(f"tool:{tool}=={version}")
    for family, members in TOOL_FAMILIES.items():
        for member in members:
            if member in tools:
                names.add(f"tool:{family}")
                version = _tool_version(tools[member])
                if version is not None:
                    names.add(f"tool:{family}=={version}")
    names |= {f"lib:{name}" for name in libraries}
    return sorted(names)


def _tool_version(line: str) -> str | None:
    match = _VERSION.search(line)
    return match.group(1) if match else None


def satisfies(have: Iterable[str], needed: str) -> bool:
    """Whether capabilities ``have`` meet ``needed`` (``tool:rust>=1.70`` is met by ``tool:rust==1.83.0``)."""
    have = set(have)
    if needed in have:
        return True
    match = _NEEDED.match(needed)
    if match is None or not match.group("spec"):
        return False
    try:
        spec = SpecifierSet(match.group("spec"))
    except InvalidSpecifier:
        return False
    prefix = f"{match.group('kind')}:{match.group('name')}=="
    for name in have:
        if name.startswith(prefix):
            try:
                if Version(name[len(prefix) :]) in spec:
                    return True
            except InvalidVersion:
                continue
    return False


def satisfies_all(have: Iterable[str], needed: Iterable[str]) -> bool:
    have = set(have)
    return all(satisfies(have, n) for n in needed)


def routable(needed: str, probed_tools: Iterable[str]) -> bool:
    """Whether another worker could have ``needed``: a tool workers look for, or a library."""
    match = _NEEDED.match(needed)
    if match is None:
        return False
    if match.group("kind") == "lib":
        return not match.group("spec")
    return match.group("kind") == "tool" and match.group("name") in tool_names(probed_tools)


# -- libraries ----------------------------------------------------------------------------------


def run_probe(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str] | None:
    """What a probe command printed (nothing read from stdin), or None when it could not run in time."""
    try:
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


def probe_libraries(path: str | None = None) -> tuple[str, ...]:
    """The libraries this host has development files for (see the module's docstring)."""
    names: set[str] = set()
    pkg_config = shutil.which("pkg-config", path=path)
    if pkg_config is not None:
        listed = run_probe([pkg_config, "--list-all"], timeout=30)
        for line in (listed.stdout if listed is not None else "").splitlines():
            module = line.split(" ", 1)[0].strip().lower()
            if module:
                names |= _library_names(module)
    for directory in _library_dirs():
        for found in glob.glob(os.path.join(directory, "lib*.so")):
            names |= _library_names(os.path.basename(found)[3:-3].lower())
    return tuple(sorted(n for n in names if n))


def _library_names(name: str) -> set[str]:
    """``portaudio-2.0`` is also ``portaudio``; ``libxml-2.0`` also ``xml`` and ``libxml``."""
    out = {name, _PC_SUFFIX.sub("", name)}
    out |= {n[3:] for n in list(out) if n.startswith("lib") and len(n) > 3}
    return {n for n in out if n}


def _library_dirs() -> list[str]:
    dirs = list(_LIBRARY_DIRS)
    for base in ("/usr/lib", "/lib"):
        dirs += sorted(glob.glob(f"{base}/*-linux-gnu*"))
    return [d for d in dict.fromkeys(dirs) if os.path.isdir(d)]
