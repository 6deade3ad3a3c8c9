"""Per-package overrides: what a deployment changes in the builds of one package, as data.

``WHEELYARD_OVERRIDES`` names one TOML file or a directory of them (``*.toml``, read in name
order). Each holds ``[[override]]`` tables (docs/overrides.md)::

    [[override]]
    package = "pyyaml"                 # required
    versions = "<6.0.2"                # a PEP 440 specifier (default: every version)
    targets = "cp313-*"                # a cibuildwheel selector (default: every target)
    environment = { CFLAGS = "-O1" }
    constraints = ["cython<3"]         # constraints on the build requirements
    requirements = ["cffi>=1.15"]      # extra build requirements
    patches = ["pyyaml/fix.patch"]     # unified diffs, relative to this file
    proof_skip = ["yaml.cyaml"]        # modules the proof must not import
    proof_import = ["yaml._yaml"]      # modules the proof must import

The files are loaded once per process and validated whole at load: unknown keys are refused
with the closest valid name, requirements must be PEP 508, patches must exist and be unified
diffs of plain files. Every override that matches a build applies, in file order.
"""

from __future__ import annotations

import functools
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from builder.build_changes import BuildChanges
from builder.build_requirements import parse_build_requirements
from builder.config_table import unknown_key
from builder.errors import BuildRequirementRefused, DirectUrlRefused, OverridesInvalid
from builder.patches import PatchRefused, patched_files
from builder.secrets import is_secret_variable

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["Override", "OverridesInvalid", "load_overrides", "overrides_for"]

FIELDS = frozenset(
    {
        "package",
        "versions",
        "targets",
        "environment",
        "constraints",
        "requirements",
        "patches",
        "proof_skip",
        "proof_import",
    }
)
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MODULE = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$")
_HINT = "docs/overrides.md describes the format, with examples"


@dataclass(frozen=True)
class Override:
    source: str  # "FILE#N", for the build log
    package: str  # canonical
    versions: SpecifierSet
    targets: str
    base: BuildChanges  # what it changes

    def matches(self, name: str, version: str, target: str) -> bool:
        from cibuildwheel.selector import selector_matches

        if canonicalize_name(name) != self.package:
            return False
        try:
            if not self.versions.contains(Version(version), prereleases=True):
                return False
        except InvalidVersion:
            return False
        return bool(selector_matches(self.targets, target))

    def changes(self) -> BuildChanges:
        """Its changes, with the build log's line that says so."""
        base = self.base
        said = [
            f"{label} {', '.join(items)}"
            for label, items in (
                ("environment", sorted(base.environment)),
                ("constraints", base.constraints),
                ("requirements", base.requirements),
                ("patches", [p.name for p in base.patches]),
                ("proof skips", base.proof_skip),
                ("proof imports", base.proof_import),
            )
            if items
        ]
        note = f"wheelyard: override {self.source} applies: {'; '.join(said) or 'nothing to change'}"
        return base + BuildChanges(notes=(note,))


def _list(raw: Any, where: str, key: str, pattern: re.Pattern[str] | None = None) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(x, str) and x.strip() for x in raw):
        raise OverridesInvalid(f"{where}: '{key}' must be a list of non-empty strings", _HINT)
    for item in raw:
        if pattern is not None and not pattern.match(item):
            raise OverridesInvalid(f"{where}: '{key}' lists {item!r}, which is not a dotted module name", _HINT)
    return tuple(raw)


def _requirements(raw: Any, where: str, key: str) -> tuple[str, ...]:
    """PEP 508 requirements, as a build's own are checked (builder/build_requirements.py): no URL."""
    try:
        return tuple(
            parse_build_requirements(_list(raw, where, key), source=f"{where}: '{key}'", allow_direct_urls=False)
        )
    except (BuildRequirementRefused, DirectUrlRefused) as exc:
        raise OverridesInvalid(exc.message, _HINT) from None


def _environment(raw: Any, where: str) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise OverridesInvalid(f"{where}: 'environment' must be a table of NAME = \"value\"", _HINT)
    for name, value in raw.items():
        if not _VARIABLE.match(name) or not isinstance(value, str):
            raise OverridesInvalid(f'{where}: environment {name!r} must be NAME = "value"', _HINT)
        if is_secret_variable(name, value):
            raise OverridesInvalid(
                f"{where}: environment {name!r} looks like a secret", "a build never receives secrets"
            )
    return dict(raw)


def _patches(raw: Any, where: str, base: Path) -> tuple[Path, ...]:
    out = []
    for name in _list(raw, where, "patches"):
        path = (base / name).resolve()
        if not path.is_file():
            raise OverridesInvalid(f"{where}: the patch {name!r} is not a file (looked for {path})", _HINT)
        try:
            patched_files(path.read_text(encoding="utf-8"))
        except (PatchRefused, UnicodeDecodeError) as exc:
            raise OverridesInvalid(f"{where}: the patch {name!r} is refused: {exc}", _HINT) from None
        out.append(path)
    return tuple(out)


def _parse_override(raw: Any, where: str, base: Path) -> Override:
    if not isinstance(raw, dict):
        raise OverridesInvalid(f"{where}: each [[override]] must be a table", _HINT)
    for key in raw:
        if key not in FIELDS:
            said, hint = unknown_key(key, FIELDS)
            raise OverridesInvalid(f"{where}: {said}", hint)
    package = raw.get("package")
    if not isinstance(package, str) or not package.strip():
        raise OverridesInvalid(f"{where}: 'package' (the project's name) is required", _HINT)
    try:
        versions = SpecifierSet(raw.get("versions", ""))
    except (InvalidSpecifier, TypeError):
        shown = raw.get("versions")
        raise OverridesInvalid(f"{where}: 'versions' = {shown!r} is not a PEP 440 specifier", _HINT) from None
    targets = raw.get("targets", "*")
    if not isinstance(targets, str) or not targets.strip():
        raise OverridesInvalid(f"{where}: 'targets' must be a cibuildwheel selector such as \"cp313-*\"", _HINT)
    return Override(
        source=where,
        package=canonicalize_name(package),
        versions=versions,
        targets=targets,
        base=BuildChanges(
            environment=_environment(raw.get("environment", {}), where),
            constraints=_requirements(raw.get("constraints", []), where, "constraints"),
            requirements=_requirements(raw.get("requirements", []), where, "requirements"),
            patches=_patches(raw.get("patches", []), where, base),
            proof_skip=_list(raw.get("proof_skip", []), where, "proof_skip", _MODULE),
            proof_import=_list(raw.get("proof_import", []), where, "proof_import", _MODULE),
        ),
    )


def _parse_file(path: Path) -> list[Override]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise OverridesInvalid(f"{path}: not a readable TOML file: {exc}", _HINT) from None
    for key in data:
        if key != "override":
            said, hint = unknown_key(key, ("override",))
            raise OverridesInvalid(f"{path}: {said}", hint)
    entries = data.get("override", [])
    if not isinstance(entries, list):
        raise OverridesInvalid(f"{path}: overrides are [[override]] tables", _HINT)
    return [_parse_override(entry, f"{path.name}#{n}", path.parent) for n, entry in enumerate(entries, 1)]


@functools.cache
def load_overrides(path: Path | None) -> tuple[Override, ...]:
    """Every override of the file, or of the ``*.toml`` files of the directory, at ``path``."""
    if path is None:
        return ()
    if path.is_dir():
        files = sorted(p for p in path.glob("*.toml") if p.is_file())
    elif path.is_file():
        files = [path]
    else:
        raise OverridesInvalid(
            f"the overrides {path} are neither a file nor a directory",
            "set WHEELYARD_OVERRIDES to a TOML file or a directory of them, or unset it",
        )
    return tuple(o for f in files for o in _parse_file(f))


def overrides_for(path: Path | None, name: str, version: str, target: str) -> BuildChanges:
    """The changes of every override at ``path`` that matches the build."""
    changes = BuildChanges()
    for override in load_overrides(path):
        if override.matches(name, version, target):
            changes += override.changes()
    return changes
