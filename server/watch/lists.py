"""The watch file: lists of requirements files, lock files or project names, each with targets.

::

    [[watch]]
    name = "web"                                   # optional; shown in logs and the status
    requirements = ["requirements.txt"]            # paths are relative to this file
    targets = ["cp312-manylinux_x86_64", "cp313-manylinux_x86_64"]

    [[watch]]
    name = "tools"
    projects = ["ruff", "lxml>=5"]                 # requirement strings: the newest release that fits
    lock = ["uv.lock"]                             # pylock.toml (PEP 751) or uv.lock
    targets = ["cp31{2,3}-manylinux_x86_64"]

A target names an interpreter (a closure depends on it); a pure-Python wheel in a closure is
built or mirrored once and serves every target. Everything is checked when the file is read
(``wheelyard beat`` refuses to start on a bad one, and a scheduled run on a file edited badly
reports it and ensures nothing): unknown keys, a list with no source or no target, a missing
file, a bad requirement or build identifier. The files a list names are read again at every
run, so an edit is seen at the next one.
"""

from __future__ import annotations

import difflib
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from builder.errors import InvalidWatchFile, WheelyardError
from builder.upstream import parse_requirement

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

LIST_KEYS = ("name", "targets", "requirements", "lock", "projects")
SOURCE_KEYS = ("requirements", "lock", "projects")
EXAMPLE = '[[watch]]\nname = "web"\nrequirements = ["requirements.txt"]\ntargets = ["cp312-manylinux_x86_64"]'


@dataclass(frozen=True)
class WatchList:
    name: str
    targets: tuple[str, ...]
    requirements: tuple[str, ...] = ()  # requirements files (absolute paths)
    lock: tuple[str, ...] = ()  # pylock.toml / uv.lock files (absolute paths)
    projects: tuple[str, ...] = ()  # requirement strings

    def to_dict(self) -> dict[str, Any]:
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WatchList:
        return cls(
            name=str(data["name"]),
            targets=tuple(data["targets"]),
            requirements=tuple(data.get("requirements", ())),
            lock=tuple(data.get("lock", ())),
            projects=tuple(data.get("projects", ())),
        )


def read_watch_file(path: Path, check_targets: Any = None) -> list[WatchList]:
    """Every list of the watch file at ``path``, checked; ``InvalidWatchFile`` says what is wrong where."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise InvalidWatchFile(
            f"cannot read the watch file {path}: {exc.strerror}", "set WHEELYARD_WATCH_FILE to a readable file"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidWatchFile(f"{path} is not valid TOML: {exc}", f"write it like this:\n{EXAMPLE}") from None
    unknown = sorted(set(data) - {"watch"})
    if unknown:
        raise InvalidWatchFile(
            f"{path}: unknown top-level key(s) {', '.join(map(repr, unknown))}",
            f"a watch file has only [[watch]] tables, for example:\n{EXAMPLE}",
        )
    tables = data.get("watch", [])
    if not isinstance(tables, list) or not tables or not all(isinstance(t, dict) for t in tables):
        raise InvalidWatchFile(f"{path} has no [[watch]] table", f"write at least one, for example:\n{EXAMPLE}")
    lists = [_one(path, number, table, check_targets) for number, table in enumerate(tables, start=1)]
    names = [w.name for w in lists]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InvalidWatchFile(f"{path}: more than one list is named {', '.join(twice)}", "give each list its own name")
    return lists


def _one(path: Path, number: int, table: dict[str, Any], check_targets: Any) -> WatchList:
    where = f"{path}: list {number}" + (f" ({table['name']!r})" if isinstance(table.get("name"), str) else "")
    unknown = sorted(set(table) - set(LIST_KEYS))
    if unknown:
        close = difflib.get_close_matches(unknown[0], LIST_KEYS, n=1)
        raise InvalidWatchFile(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}",
            (f"did you mean {close[0]!r}? " if close else "") + f"a list's keys are: {', '.join(LIST_KEYS)}",
        )
    name = table.get("name", f"list-{number}")
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise InvalidWatchFile(f"{where}: 'name' must be a short string", 'for example name = "web"')
    targets = _strings(where, table, "targets")
    if not targets:
        raise InvalidWatchFile(f"{where} has no targets", 'add targets = ["cp312-manylinux_x86_64"]')
    if check_targets is not None:
        try:
            check_targets(targets)
        except WheelyardError as exc:
            raise InvalidWatchFile(f"{where}: {exc.message}", exc.hint) from None
    if not any(table.get(key) for key in SOURCE_KEYS):
        raise InvalidWatchFile(
            f"{where} names nothing to watch",
            "give it requirements = [FILES], lock = [FILES] or projects = [NAMES]",
        )
    projects = _strings(where, table, "projects")
    for project in projects:
        try:
            parse_requirement(project)
        except WheelyardError as exc:
            raise InvalidWatchFile(f"{where}: projects: {exc.message}", exc.hint) from None
    return WatchList(
        name=name.strip(),
        targets=tuple(targets),
        requirements=_files(where, path, table, "requirements"),
        lock=_files(where, path, table, "lock"),
        projects=tuple(projects),
    )


def _strings(where: str, table: dict[str, Any], key: str) -> list[str]:
    """A key that takes a string or a list of strings."""
    value = table.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise InvalidWatchFile(f"{where}: {key!r} must be a list of strings", f'for example {key} = ["..."]')
    return [v.strip() for v in value]


def _files(where: str, path: Path, table: dict[str, Any], key: str) -> tuple[str, ...]:
    files = []
    for name in _strings(where, table, key):
        file = (path.parent / name).resolve()
        if not file.is_file():
            raise InvalidWatchFile(f"{where}: {key}: no file {file}", f"paths in {key!r} are relative to {path}")
        files.append(str(file))
    return tuple(files)
