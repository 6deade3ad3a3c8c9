"""Remedies: retry recipes for failed builds, as data (builder/diagnosis/remedies.toml).

A rule of the diagnosis rule set names the remedies that may fix its failure (``retry``); after a
failed build whose primary cause names one, the worker builds again with it (builder/worker.py):
one remedy per attempt, never the same one twice, at most ``build_attempts`` attempts. The file is
loaded once into frozen dataclasses and validated at load: unknown keys are refused (with the
closest valid name), every kind has the fields it needs and no others, and every remedy a rule
names exists.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from builder.build_changes import BuildChanges
from builder.config import Settings
from builder.config_table import unknown_key
from builder.errors import RemedySetError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["KINDS", "Remedy", "RemedySet", "RemedySetError", "load_remedies", "next_remedy", "parse_remedies"]

# Each kind, and the fields (beyond name, kind, summary) it requires or allows.
KINDS: Mapping[str, tuple[frozenset[str], frozenset[str]]] = {
    "regenerate-cython": (frozenset({"cython"}), frozenset({"cython", "header"})),
    "as-of-upload": (frozenset(), frozenset({"current"})),
    "setup-requires": (frozenset(), frozenset()),
    "constraint": (frozenset({"constraints"}), frozenset({"constraints"})),
    "environment": (frozenset({"environment"}), frozenset({"environment"})),
    "compat-header": (frozenset({"header"}), frozenset({"header", "constraints"})),
}
_COMMON = frozenset({"name", "kind", "summary"})
_FIELDS = _COMMON.union(*(allowed for _, allowed in KINDS.values()))
_NAME = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HEADER = re.compile(r"^[a-z0-9][a-z0-9._-]*\.h$")


@dataclass(frozen=True)
class Remedy:
    name: str
    kind: str
    summary: str
    constraints: tuple[str, ...] = ()
    environment: Mapping[str, str] = field(default_factory=dict)
    cython: str | None = None
    current: tuple[str, ...] = ()
    header: str | None = None

    def changes(self) -> BuildChanges:
        """What the build does differently with this remedy."""
        note = f"wheelyard: remedy {self.name}: {self.summary}"
        return BuildChanges(
            environment=dict(self.environment),
            constraints=self.constraints,
            as_of_upload=self.kind == "as-of-upload",
            keep_current=self.current,
            regenerate_cython=self.cython if self.kind == "regenerate-cython" else None,
            setup_requires=self.kind == "setup-requires",
            headers=(self.header,) if self.header else (),
            notes=(note,),
        )


@dataclass(frozen=True)
class RemedySet:
    remedies: Mapping[str, Remedy]

    def get(self, name: str) -> Remedy:
        try:
            return self.remedies[name]
        except KeyError:
            raise RemedySetError(*unknown_key(name, self.remedies, "remedy")) from None


def _err(where: str, message: str, hint: str = "docs/remedies.md describes every field") -> RemedySetError:
    return RemedySetError(f"remedies.toml: {where}: {message}", hint)


def _strings(raw: Any, where: str, key: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(x, str) and x.strip() for x in raw):
        raise _err(where, f"'{key}' must be a list of non-empty strings")
    return tuple(raw)


def _requirement(text: str, where: str, key: str) -> str:
    try:
        return str(Requirement(text))
    except InvalidRequirement as exc:
        raise _err(where, f"'{key}' lists {text!r}, which is not a PEP 508 requirement: {exc}") from None


def _parse_remedy(raw: Any, index: int) -> Remedy:
    where = f"remedy #{index + 1}"
    if not isinstance(raw, dict):
        raise _err(where, "each [[remedy]] must be a table")
    if isinstance(raw.get("name"), str):
        where = f"remedy {raw['name']!r}"
    for key in raw:
        if key not in _FIELDS:
            raise _err(where, *unknown_key(key, _FIELDS))
    for key in ("name", "kind", "summary"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise _err(where, f"'{key}' is required and must be a non-empty string")
    if not _NAME.match(raw["name"]):
        raise _err(where, "'name' must be lower-case words joined by '-'")
    kind = raw["kind"]
    if kind not in KINDS:
        raise _err(where, *unknown_key(kind, KINDS, "kind"))
    required, allowed = KINDS[kind]
    extra = sorted(set(raw) - _COMMON - allowed)
    if extra:
        raise _err(where, f"a {kind} remedy has no field {extra[0]!r}", f"its fields: {sorted(_COMMON | allowed)}")
    missing = sorted(required - set(raw))
    if missing:
        raise _err(where, f"a {kind} remedy needs {missing[0]!r}")
    environment = raw.get("environment", {})
    if not isinstance(environment, dict) or not all(
        isinstance(k, str) and _VARIABLE.match(k) and isinstance(v, str) for k, v in environment.items()
    ):
        raise _err(where, "'environment' must be a table of NAME = \"value\"")
    if kind == "environment" and not environment:
        raise _err(where, "'environment' must set at least one variable")
    listed = _strings(raw.get("constraints", []), where, "constraints")
    constraints = tuple(_requirement(c, where, "constraints") for c in listed)
    if kind == "constraint" and not constraints:
        raise _err(where, "'constraints' must list at least one requirement")
    cython = _requirement(raw["cython"], where, "cython") if "cython" in raw else None
    current = tuple(canonicalize_name(n) for n in _strings(raw.get("current", []), where, "current"))
    header = _header(raw["header"], where) if "header" in raw else None
    return Remedy(raw["name"], kind, raw["summary"], constraints, dict(environment), cython, current, header)


def _header(name: Any, where: str) -> str:
    """A header shipped in builder/diagnosis/compat/, by its file name."""
    if not isinstance(name, str) or not _HEADER.match(name):
        raise _err(where, f"'header' must be the file name of a header (name.h), not {name!r}")
    shipped = sorted(compat_headers())
    if name not in shipped:
        raise _err(where, *unknown_key(name, shipped, "header"))
    return name


def compat_headers() -> dict[str, str]:
    """The compatibility headers shipped beside the rule set (builder/diagnosis/compat/), by name."""
    folder = resources.files("builder.diagnosis").joinpath("compat")
    return {f.name: f.read_text("utf-8") for f in folder.iterdir() if f.name.endswith(".h")}


def parse_remedies(text: str, rule_retries: Mapping[str, Sequence[str]] | None = None) -> RemedySet:
    """The remedies of ``text``, validated; ``rule_retries`` (rule id -> the remedies it names)
    is checked against them."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RemedySetError(f"remedies.toml is not valid TOML: {exc}", "fix the file's syntax") from None
    for key in data:
        if key not in ("schema", "remedy"):
            raise _err("top level", *unknown_key(key, ("schema", "remedy")))
    if data.get("schema") != 1:
        raise _err("top level", "'schema = 1' is required")
    raw = data.get("remedy", [])
    if not isinstance(raw, list):
        raise _err("top level", "remedies are [[remedy]] tables")
    remedies: dict[str, Remedy] = {}
    for index, entry in enumerate(raw):
        remedy = _parse_remedy(entry, index)
        if remedy.name in remedies:
            raise _err(f"remedy {remedy.name!r}", "defined twice")
        remedies[remedy.name] = remedy
    for rule, names in (rule_retries or {}).items():
        for name in names:
            if name not in remedies:
                said, hint = unknown_key(name, remedies, "remedy")
                raise RemedySetError(f"rules.toml: rule {rule!r} retries with an {said}", hint)
    return RemedySet(remedies)


def remedies_text() -> str:
    return resources.files("builder.diagnosis").joinpath("remedies.toml").read_text("utf-8")


@functools.cache
def load_remedies() -> RemedySet:
    """The shipped remedies, validated against the shipped rule set; loaded once per process."""
    from builder.diagnosis.rules import load_rules

    return parse_remedies(remedies_text(), {rule.id: rule.retry for rule in load_rules().rules if rule.retry})


def next_remedy(rules: Sequence[str | None], tried: Sequence[str]) -> str | None:
    """The first remedy not tried yet that the rules (the primary causes of the attempts, the
    latest first) name, or None: a remedy that did not help and left a cause naming none is
    followed by the next one the earlier cause names."""
    from builder.diagnosis.rules import load_rules

    ruleset = load_rules()
    for rule_id in rules:
        if not rule_id:
            continue
        try:
            retry = ruleset.rule(str(rule_id)).retry
        except KeyError:
            continue
        for name in retry:
            if name not in tried:
                return name
    return None


def remedies_allowed(settings: Settings, name: str) -> bool:
    """Whether this deployment retries failed builds of ``name`` with remedies."""
    skipped = {canonicalize_name(n.strip()) for n in settings.remedies_skip.split(",") if n.strip()}
    return settings.remedies and canonicalize_name(name) not in skipped


def changes_for_build(settings: Settings, name: str, version: str, target: str, remedy: str | None) -> BuildChanges:
    """What a build does differently: the package's overrides, then the attempt's remedy."""
    from builder.overrides import overrides_for

    changes = overrides_for(settings.overrides, name, version, target)
    if remedy is not None:
        changes += load_remedies().get(remedy).changes()
    return changes
