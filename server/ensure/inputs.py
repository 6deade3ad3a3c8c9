"""What a team installs, read from the files it keeps: requirements files, locks, pyproject.toml.

Everything here is parsing only: no network, no resolution. Unpinned inputs become
``Sources.requirements`` / ``constraints`` (resolved later, per target, by a real resolver);
a lock (PEP 751 ``pylock.toml`` or ``uv.lock``) becomes a ``Lock`` whose closure for a target is
read from the lock as it is, its markers evaluated for that target.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.markers import InvalidMarker, Marker
from packaging.requirements import InvalidRequirement as _BadRequirement
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from builder.errors import InvalidEnsureInput

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

Environment = Mapping[str, str]
ReadFile = Callable[[Path], str]


@dataclass(frozen=True)
class Pin:
    """One distribution of a closure: a release of a project, as a lock or a resolver names it."""

    name: str  # canonical (PEP 503)
    version: str

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class LockedPackage:
    name: str
    version: str
    marker: str | None = None


@dataclass(frozen=True)
class PyLock:
    """A PEP 751 lock: every package with the marker under which it is installed."""

    packages: tuple[LockedPackage, ...]
    extras: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()

    def closure(self, environment: Environment) -> list[Pin]:
        env: dict[str, Any] = {**environment, "extras": set(self.extras), "dependency_groups": set(self.groups)}
        return [
            Pin(p.name, p.version)
            for p in self.packages
            if p.marker is None or Marker(p.marker).evaluate(env, context="lock_file")
        ]


@dataclass(frozen=True)
class UvDependency:
    name: str
    version: str | None
    marker: str | None
    extras: tuple[str, ...]


@dataclass(frozen=True)
class UvPackage:
    name: str
    version: str | None
    from_index: bool  # a registry package (the project itself and path sources are not)
    dependencies: tuple[UvDependency, ...]
    optional: Mapping[str, tuple[UvDependency, ...]]
    groups: Mapping[str, tuple[UvDependency, ...]]


@dataclass(frozen=True)
class UvLock:
    """A uv.lock: a graph from the project's own packages; the closure is what is reached on a target."""

    packages: tuple[UvPackage, ...]
    extras: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset({"dev"})  # uv sync's default group

    def closure(self, environment: Environment) -> list[Pin]:
        by_name: dict[str, list[UvPackage]] = {}
        for package in self.packages:
            by_name.setdefault(package.name, []).append(package)
        roots = [p for p in self.packages if not p.from_index]
        seen: set[tuple[str, str | None, tuple[str, ...]]] = set()
        reached: dict[tuple[str, str | None], UvPackage] = {}
        todo: list[tuple[UvPackage, tuple[str, ...]]] = []
        for root in roots:
            deps = list(root.dependencies)
            deps += [d for extra in self.extras for d in root.optional.get(extra, ())]
            deps += [d for group in self.groups for d in root.groups.get(group, ())]
            todo.append((UvPackage(root.name, root.version, False, tuple(deps), {}, {}), ()))
        while todo:
            package, extras = todo.pop()
            key = (package.name, package.version, extras)
            if key in seen:
                continue
            seen.add(key)
            reached[(package.name, package.version)] = package
            deps = list(package.dependencies) + [d for e in extras for d in package.optional.get(e, ())]
            for dep in deps:
                if dep.marker and not _evaluate(dep.marker, environment, extras):
                    continue
                todo.append((_pick(by_name, dep), dep.extras))
        return [Pin(p.name, p.version) for p in reached.values() if p.from_index and p.version]


def _evaluate(marker: str, environment: Environment, extras: tuple[str, ...]) -> bool:
    marker_ = Marker(marker)
    if not extras:
        return marker_.evaluate({**environment, "extra": ""})
    return any(marker_.evaluate({**environment, "extra": extra}) for extra in extras)


def _pick(by_name: Mapping[str, list[UvPackage]], dep: UvDependency) -> UvPackage:
    candidates = by_name.get(dep.name, [])
    if dep.version is not None:
        candidates = [c for c in candidates if c.version == dep.version]
    if not candidates:
        raise InvalidEnsureInput(
            f"uv.lock names {dep.name} {dep.version or ''} as a dependency but has no such package",
            "run `uv lock` again: the lock is incomplete",
        )
    return candidates[0]


Lock = PyLock | UvLock


@dataclass(frozen=True)
class Sources:
    """Everything to ensure: requirements to resolve (with their constraints) and locks taken as they are."""

    requirements: tuple[str, ...] = ()
    constraints: tuple[str, ...] = ()
    locks: tuple[Lock, ...] = ()
    hashes: Mapping[str, frozenset[str]] = field(default_factory=dict)  # name -> sha256s a file pinned

    def __bool__(self) -> bool:
        return bool(self.requirements or self.locks)

    def merged(self, other: Sources) -> Sources:
        hashes = {**self.hashes}
        for name, values in other.hashes.items():
            hashes[name] = hashes.get(name, frozenset()) | values
        return Sources(
            self.requirements + other.requirements,
            self.constraints + other.constraints,
            self.locks + other.locks,
            hashes,
        )


# -- plain requirement strings -----------------------------------------------------------------
def requirement(text: str, where: str = "") -> Requirement:
    """One PEP 508 requirement of a project on an index (no URL, no path)."""
    stripped = text.strip()
    place = f" ({where})" if where else ""
    try:
        req = Requirement(stripped)
    except _BadRequirement as exc:
        raise InvalidEnsureInput(
            f"{stripped!r}{place} is not a requirement: {exc}",
            "write it as pip does: NAME, NAME==VERSION, NAME[extra]>=1,<2 or NAME; python_version < '3.13'",
        ) from None
    if req.url:
        raise InvalidEnsureInput(
            f"{stripped!r}{place} points at a URL",
            "wheelyard ensures releases of the upstream index and private uploads: name the package and a version",
        )
    return req


def from_strings(texts: Iterable[str]) -> Sources:
    reqs = tuple(str(requirement(t)) for t in texts if t.strip())
    return Sources(requirements=reqs)


# -- requirements files ------------------------------------------------------------------------
_IGNORED_OPTIONS = {
    "-i",
    "--index-url",
    "--extra-index-url",
    "-f",
    "--find-links",
    "--trusted-host",
    "--only-binary",
    "--no-binary",
    "--prefer-binary",
    "--pre",
    "--no-index",
    "--require-hashes",
    "--use-feature",
}


def from_requirements_file(path: Path, read: ReadFile | None = None) -> Sources:
    """A requirements file and the files it includes (``-r``) or constrains with (``-c``)."""
    reader = read or (lambda p: p.read_text())
    return _requirements_file(path, reader, constraint=False, stack=())


def from_requirements_text(text: str, name: str = "requirements.txt") -> Sources:
    """A requirements file given as text (an API body): its includes cannot be followed."""

    def refuse(path: Path) -> str:
        raise InvalidEnsureInput(
            f"{name} includes {path}, which the API cannot read",
            "send the included file's lines too (wheelyard ensure -r FILE reads includes and sends them)",
        )

    return _requirements_text(text, Path(name), refuse, constraint=False, stack=())


def _requirements_file(path: Path, read: ReadFile, *, constraint: bool, stack: tuple[Path, ...]) -> Sources:
    if path in stack:
        raise InvalidEnsureInput(f"{path} includes itself (through {' -> '.join(map(str, stack))})", "remove the loop")
    try:
        text = read(path)
    except OSError as exc:
        where = f" (included from {stack[-1]})" if stack else ""
        raise InvalidEnsureInput(f"cannot read {path}{where}: {exc.strerror}", "check the path") from None
    return _requirements_text(text, path, read, constraint=constraint, stack=(*stack, path))


def _requirements_text(text: str, path: Path, read: ReadFile, *, constraint: bool, stack: tuple[Path, ...]) -> Sources:
    out = Sources()
    reqs: list[str] = []
    hashes: dict[str, frozenset[str]] = {}
    for number, line in _logical_lines(text):
        where = f"{path}:{number}"
        words = _split(line, where)
        if not words:
            continue
        head = words[0]
        option, _, value = head.partition("=")
        if option in ("-r", "--requirement", "-c", "--constraint"):
            target = value or (words[1] if len(words) > 1 else "")
            if not target:
                raise InvalidEnsureInput(f"{where}: {option} names no file", f"write {option} OTHER.txt")
            included = path.parent / target
            nested = option in ("-c", "--constraint") or constraint
            out = out.merged(_requirements_file(included, read, constraint=nested, stack=stack or (path,)))
            continue
        if option in ("-e", "--editable"):
            raise InvalidEnsureInput(
                f"{where}: an editable install ({line.strip()}) is not a release on an index",
                "ensure the project's dependencies instead (--project pyproject.toml), or drop the line",
            )
        if head.startswith("-"):
            if option in _IGNORED_OPTIONS:
                continue
            raise InvalidEnsureInput(
                f"{where}: unknown option {option}", "wheelyard ensure reads pip's requirement lines"
            )
        spec = [w for w in words if not w.startswith("--hash")]
        req = requirement(" ".join(spec), where)
        pinned = {w.partition("=")[2].removeprefix("sha256:") for w in words if w.startswith("--hash")}
        if pinned:
            name = canonicalize_name(req.name)
            hashes[name] = hashes.get(name, frozenset()) | frozenset(pinned)
        reqs.append(str(req))
    mine = Sources(constraints=tuple(reqs), hashes=hashes) if constraint else Sources(tuple(reqs), hashes=hashes)
    return out.merged(mine)


def _logical_lines(text: str) -> Iterable[tuple[int, str]]:
    """Lines with comments removed and backslash continuations joined, with their first line number."""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = "" if raw.lstrip().startswith("#") else raw
        cut = line.find(" #")
        line = line[:cut] if cut >= 0 else line
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending.append(line.rstrip()[:-1])
            continue
        pending.append(line)
        joined = " ".join(pending).strip()
        pending = []
        if joined:
            yield start, joined
    if pending and " ".join(pending).strip():
        yield start, " ".join(pending).strip()


def _split(line: str, where: str) -> list[str]:
    """A requirement line in words: the requirement kept whole (quotes in its marker included), then
    its options; split as pip does, at the first word that starts with a dash."""
    if line.startswith("-"):
        try:
            return shlex.split(line, posix=True)
        except ValueError as exc:
            raise InvalidEnsureInput(f"{where}: {exc}", "check the quotes on this line") from None
    words = line.split(" ")
    cut = next((i for i, w in enumerate(words) if w.startswith("-")), len(words))
    options = shlex.split(" ".join(words[cut:]))
    unknown = [o for o in options if not o.startswith("--hash")]
    if unknown:
        raise InvalidEnsureInput(f"{where}: unknown option {unknown[0]} after a requirement", "remove it")
    return [" ".join(words[:cut]).strip(), *options]


# -- pyproject.toml ----------------------------------------------------------------------------
def from_pyproject(text: str, extras: Sequence[str] = (), groups: Sequence[str] = (), name: str = "") -> Sources:
    """A project's dependencies, the optional dependencies named, and PEP 735 dependency groups."""
    where = name or "pyproject.toml"
    data = _toml(text, where)
    project = data.get("project")
    if not isinstance(project, dict):
        raise InvalidEnsureInput(f"{where} has no [project] table", "ensure reads PEP 621 project metadata")
    reqs = [str(requirement(r, where)) for r in _strings(project.get("dependencies", []), where, "dependencies")]
    optional = project.get("optional-dependencies", {})
    for extra in extras:
        wanted = canonicalize_name(extra)
        found = [v for k, v in optional.items() if canonicalize_name(k) == wanted]
        if not found:
            raise InvalidEnsureInput(
                f"{where} has no optional dependencies named {extra!r}",
                f"known: {', '.join(sorted(optional)) or 'none'}",
            )
        reqs += [str(requirement(r, where)) for r in _strings(found[0], where, f"optional-dependencies.{extra}")]
    table = data.get("dependency-groups", {})
    for group in groups:
        reqs += [str(requirement(r, where)) for r in _group(table, group, where, ())]
    return Sources(requirements=tuple(reqs))


def _group(table: Mapping[str, Any], group: str, where: str, stack: tuple[str, ...]) -> list[str]:
    """A PEP 735 group's requirements, ``{include-group = "..."}`` followed."""
    wanted = canonicalize_name(group)
    found = [v for k, v in table.items() if canonicalize_name(k) == wanted]
    if not found:
        raise InvalidEnsureInput(
            f"{where} has no dependency group {group!r}",
            f"known: {', '.join(sorted(table)) or 'none'} ([dependency-groups], PEP 735)",
        )
    if wanted in stack:
        raise InvalidEnsureInput(f"{where}: dependency group {group!r} includes itself", "remove the loop")
    out: list[str] = []
    for entry in found[0]:
        if isinstance(entry, str):
            out.append(entry)
        elif isinstance(entry, dict) and isinstance(entry.get("include-group"), str):
            out += _group(table, entry["include-group"], where, (*stack, wanted))
        else:
            raise InvalidEnsureInput(f"{where}: dependency group {group!r} has an entry {entry!r}", "see PEP 735")
    return out


def _strings(value: Any, where: str, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidEnsureInput(f"{where}: {key} is not a list of requirement strings", "see PEP 621")
    return list(value)


def _toml(text: str, where: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidEnsureInput(f"{where} is not valid TOML: {exc}", "check the file with a TOML parser") from None


# -- locks -------------------------------------------------------------------------------------
def from_pylock(text: str, extras: Sequence[str] = (), groups: Sequence[str] = (), name: str = "") -> Sources:
    """A PEP 751 lock; the groups default to its ``default-groups``."""
    where = name or "pylock.toml"
    data = _toml(text, where)
    if "lock-version" not in data or not isinstance(data.get("packages"), list):
        raise InvalidEnsureInput(
            f"{where} is not a PEP 751 lock (no lock-version or [[packages]])", "write one with uv"
        )
    packages = []
    for entry in data["packages"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise InvalidEnsureInput(f"{where}: a [[packages]] entry has no name", "write the lock with uv or pip")
        # The project itself and path/VCS sources are not releases on an index.
        if not entry.get("version") or any(k in entry for k in ("directory", "vcs", "archive")):
            continue
        marker = entry.get("marker")
        if marker is not None:
            _check_marker(marker, where)
        packages.append(LockedPackage(canonicalize_name(entry["name"]), str(entry["version"]), marker))
    chosen = set(groups) if groups else set(data.get("default-groups", []))
    lock = PyLock(tuple(packages), frozenset(extras), frozenset(chosen))
    return Sources(locks=(lock,))


def from_uv_lock(text: str, extras: Sequence[str] = (), groups: Sequence[str] | None = None, name: str = "") -> Sources:
    """A uv.lock; ``groups`` defaults to uv's own default (the ``dev`` group)."""
    where = name or "uv.lock"
    data = _toml(text, where)
    if "version" not in data or not isinstance(data.get("package"), list):
        raise InvalidEnsureInput(f"{where} is not a uv.lock (no version or [[package]])", "write one with `uv lock`")
    packages = tuple(_uv_package(entry, where) for entry in data["package"])
    if not any(not p.from_index for p in packages):
        raise InvalidEnsureInput(
            f"{where} has no project of its own to start from", "write it with `uv lock` in a project"
        )
    lock = UvLock(packages, frozenset(extras), frozenset(groups if groups is not None else ("dev",)))
    return Sources(locks=(lock,))


def _uv_package(entry: Any, where: str) -> UvPackage:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise InvalidEnsureInput(f"{where}: a [[package]] entry has no name", "run `uv lock` again")
    source = entry.get("source", {})
    from_index = isinstance(source, dict) and "registry" in source

    def deps(items: Any) -> tuple[UvDependency, ...]:
        out = []
        for d in items or []:
            marker = d.get("marker")
            if marker is not None:
                _check_marker(marker, where)
            out.append(UvDependency(canonicalize_name(d["name"]), d.get("version"), marker, tuple(d.get("extra", ()))))
        return tuple(out)

    return UvPackage(
        name=canonicalize_name(entry["name"]),
        version=entry.get("version"),
        from_index=from_index,
        dependencies=deps(entry.get("dependencies")),
        optional={canonicalize_name(k): deps(v) for k, v in entry.get("optional-dependencies", {}).items()},
        groups={canonicalize_name(k): deps(v) for k, v in entry.get("dev-dependencies", {}).items()},
    )


def _check_marker(marker: str, where: str) -> None:
    try:
        Marker(marker)
    except InvalidMarker as exc:
        raise InvalidEnsureInput(f"{where}: invalid marker {marker!r}: {exc}", "write the lock again") from None
