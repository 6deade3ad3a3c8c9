"""Load and validate the diagnosis rule set (``rules.toml``) into frozen dataclasses.

The rule set is data; this module only checks it and compiles it. Loading happens once
per process (:func:`load_rules` is cached); a bad rule set raises :class:`RuleSetError`
naming the rule and the field at fault.
"""

from __future__ import annotations

import functools
import hashlib
import re
import string
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .keywords import required_literal

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CATEGORIES: tuple[str, ...] = (
    "missing-c-compiler",
    "missing-cxx-compiler",
    "missing-python-headers",
    "missing-msvc",
    "missing-rust",
    "missing-library-header",
    "missing-config-tool",
    "missing-build-tool",
    "missing-fortran",
    "missing-blas",
    "linker-missing-library",
    "python-version-incompat",
    "missing-build-dependency",
    "incompatible-build-tool",
    "compile-error",
    "network-failure",
    "out-of-memory",
    "too-many-processes",
    "disk-full",
    "too-many-files",
    "log-too-large",
    "timeout",
    "no-distribution",
    "import-failed",
    "no-failure",
    "unknown",
)

PLATFORMS: tuple[str, ...] = ("debian", "fedora", "alpine", "macos", "windows")
REMEDY_KEYS: tuple[str, ...] = (*PLATFORMS, "rust", "any")
LOOKUP_GROUPS: tuple[str, ...] = ("header", "library", "name", "tool")
CONTEXT_KEYS: frozenset[str] = frozenset({"pyver", "pyver_nodot", "package"})
LOOKUP_KEYS: frozenset[str] = frozenset({"pkg", "lib"})

_RULE_FIELDS = frozenset(
    {
        "id",
        "category",
        "priority",
        "keywords",
        "patterns",
        "unless",
        "detail",
        "explanation",
        "capability",
        "remedies",
        "lookup",
        "fallback_remedies",
        "fallback_capability",
        "refines",
        "window",
        "defaults",
        "in_build",
        "steps",
        "not_steps",
        "only_with",
        "retry",
        "requested_file",
    }
)
_REQUIRED = ("id", "category", "keywords", "patterns", "explanation", "remedies", "capability")
_LIBRARY_FIELDS = frozenset({"name", "headers", "link", "aliases", "tools", *PLATFORMS})
_ID_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


class RuleSetError(ValueError):
    """The rule set file is invalid; the message names the rule and field."""


@dataclass(frozen=True)
class Library:
    """A system library: what names it goes by and which package provides it per platform."""

    name: str
    headers: tuple[str, ...]
    link: tuple[str, ...]
    aliases: tuple[str, ...]
    tools: tuple[str, ...]
    packages: Mapping[str, str]


@dataclass(frozen=True)
class Rule:
    """One failure and all the ways tools word it."""

    id: str
    category: str
    priority: int
    keywords: tuple[str, ...]
    patterns: tuple[re.Pattern[str], ...]
    unless: tuple[re.Pattern[str], ...]
    detail: str
    explanation: str
    capability: str
    remedies: Mapping[str, str]
    lookup: str | None = None
    fallback_remedies: Mapping[str, str] = field(default_factory=dict)
    fallback_capability: str = ""
    refines: str | None = None
    window: int = 0
    defaults: Mapping[str, str] = field(default_factory=dict)
    # A fetch failure of the sdist's build itself (its own dependencies), not of pip getting the
    # package: the advice about the sdist pip built still applies.
    in_build: bool = False
    # The steps of the log the rule applies in (empty: all) or never applies in: wheelyard's
    # "==> NAME" steps (builder/pipeline.py) and "build-deps" (pip installing build dependencies).
    steps: frozenset[str] = frozenset()
    not_steps: frozenset[str] = frozenset()
    # The cause counts only where one of these rules also matched in the log (pip's list of
    # versions skipped for their Requires-Python explains a "no matching distribution" only).
    only_with: frozenset[str] = frozenset()
    # The remedies (remedies.toml) a worker retries a build that failed for this cause with, in order.
    retry: tuple[str, ...] = ()
    # The cause is the line naming the file of the release asked for (its ``file`` group): pip's
    # lines about the other releases are not. Decided once the log has said what was asked for.
    requested_file: bool = False
    order: int = 0
    # per pattern, text every match of it holds (keywords.required_literal): a line without it
    # is not searched (most lines a rule's keywords send it are not its own)
    literals: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.literals) != len(self.patterns):
            object.__setattr__(self, "literals", tuple(required_literal(p) for p in self.patterns))

    def match(self, line: str) -> re.Match[str] | None:
        """The first pattern match on ``line``, unless an ``unless`` pattern matches."""
        for pat, literal in zip(self.patterns, self.literals, strict=True):
            if literal not in line:
                continue
            m = pat.search(line)
            if m is not None:
                for neg in self.unless:
                    if neg.search(line):
                        return None
                return m
        return None


@dataclass(frozen=True)
class RuleSet:
    """The whole rule set: rules (in trial order), noise patterns and the library table."""

    version: str
    rules: tuple[Rule, ...]
    noise: tuple[re.Pattern[str], ...]
    libraries: tuple[Library, ...]
    by_header: Mapping[str, Library]
    by_link: Mapping[str, Library]
    by_alias: Mapping[str, Library]
    by_tool: Mapping[str, Library]

    def rule(self, rule_id: str) -> Rule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)

    def find_library(self, group: str, value: str) -> Library | None:
        """Look ``value`` (a header, -l name, alias or config tool) up in the table."""
        if group == "header":
            v = value.replace("\\", "/")
            lib = self.by_header.get(v)
            if lib is None and "/" in v:  # "foo/bar.h" also matches a table entry "bar.h"
                lib = self.by_header.get(v.rsplit("/", 1)[1])
            return lib
        if group == "library":
            v = value[:-4] if value.lower().endswith(".lib") else value
            return self.by_link.get(v) or self.by_link.get(v.lower())
        if group == "tool":
            return self.by_tool.get(value)
        return self.by_alias.get(value) or self.by_alias.get(value.lower())


def _err(where: str, msg: str) -> RuleSetError:
    return RuleSetError(f"rules.toml: {where}: {msg}")


def _str_list(raw: Any, where: str, name: str, *, allow_empty: bool = False) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(x, str) and x for x in raw):
        raise _err(where, f"'{name}' must be a list of non-empty strings")
    if not raw and not allow_empty:
        raise _err(where, f"'{name}' must not be empty")
    return tuple(raw)


def _compile(raw: Any, where: str, name: str, *, allow_empty: bool) -> tuple[re.Pattern[str], ...]:
    out = []
    for src in _str_list(raw, where, name, allow_empty=allow_empty):
        try:
            out.append(re.compile(src))
        except re.error as exc:
            raise _err(where, f"bad regex in '{name}': {src!r}: {exc}") from None
    return tuple(out)


def _placeholders(template: str, where: str, name: str) -> set[str]:
    try:
        return {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise _err(where, f"bad template in '{name}': {exc}") from None


def _table(raw: Any, where: str, name: str) -> dict[str, str]:
    if not isinstance(raw, dict) or not raw:
        raise _err(where, f"'{name}' must be a table of platform = \"text\"")
    for k, v in raw.items():
        if k not in REMEDY_KEYS:
            raise _err(where, f"unknown platform {k!r} in '{name}' (use one of {REMEDY_KEYS})")
        if not isinstance(v, str) or not v.strip():
            raise _err(where, f"'{name}.{k}' must be a non-empty string")
    return dict(raw)


def _parse_rule(raw: Any, index: int) -> Rule:
    where = f"rule #{index + 1}"
    if not isinstance(raw, dict):
        raise _err(where, "each [[rule]] must be a table")
    if isinstance(raw.get("id"), str):
        where = f"rule {raw['id']!r}"
    _check_fields(raw, where)
    patterns = _compile(raw["patterns"], where, "patterns", allow_empty=False)
    remedies = _table(raw["remedies"], where, "remedies")
    fallback = _table(raw["fallback_remedies"], where, "fallback_remedies") if ("fallback_remedies" in raw) else {}
    refines, window = _refinement(raw, where)
    defaults = raw.get("defaults", {})
    if not isinstance(defaults, dict) or not all(isinstance(v, str) for v in defaults.values()):
        raise _err(where, "'defaults' must be a table of strings")
    in_build = raw.get("in_build", False)
    if not isinstance(in_build, bool):
        raise _err(where, "'in_build' must be true or false")
    requested_file = _requested_file(raw, where, patterns)
    steps = _steps(raw, where)
    retry = raw.get("retry", [])
    if not isinstance(retry, list) or not all(isinstance(v, str) and _ID_RE.match(v) for v in retry):
        raise _err(where, "'retry' must be a list of remedy names (remedies.toml)")
    _check_placeholders(raw, where, patterns, defaults, remedies, fallback)
    return Rule(
        id=raw["id"],
        category=raw["category"],
        priority=raw.get("priority", 50),
        keywords=_str_list(raw["keywords"], where, "keywords"),
        patterns=patterns,
        unless=_compile(raw.get("unless", []), where, "unless", allow_empty=True),
        detail=raw.get("detail", ""),
        explanation=raw["explanation"],
        capability=raw["capability"],
        remedies=remedies,
        lookup=raw.get("lookup"),
        fallback_remedies=fallback,
        fallback_capability=raw.get("fallback_capability", ""),
        refines=refines,
        window=window,
        defaults=dict(defaults),
        in_build=in_build,
        steps=steps["steps"],
        not_steps=steps["not_steps"],
        only_with=steps["only_with"],
        retry=tuple(retry),
        requested_file=requested_file,
        order=index,
    )


def _check_fields(raw: dict[str, Any], where: str) -> None:
    """The rule's fields: the required ones there, no unknown one, and the scalar ones of their types."""
    for key in _REQUIRED:
        if key not in raw:
            raise _err(where, f"missing field '{key}'")
    unknown = set(raw) - _RULE_FIELDS
    if unknown:
        raise _err(where, f"unknown field(s) {sorted(unknown)}")
    if not isinstance(raw["id"], str) or not _ID_RE.match(raw["id"]):
        raise _err(where, "'id' must be lower-case words joined by '-'")
    category = raw["category"]
    if category not in CATEGORIES or category in ("unknown", "no-failure"):
        raise _err(where, f"unknown category {category!r}")
    priority = raw.get("priority", 50)
    if not isinstance(priority, int) or isinstance(priority, bool) or not 0 <= priority <= 100:
        raise _err(where, "'priority' must be an integer 0..100")
    for key in ("detail", "explanation", "capability", "fallback_capability"):
        if key in raw and not isinstance(raw[key], str):
            raise _err(where, f"'{key}' must be a string")
    if not raw["explanation"].strip():
        raise _err(where, "'explanation' must not be empty")
    if raw.get("lookup") not in (None, "library"):
        raise _err(where, "'lookup' must be \"library\"")


def _refinement(raw: dict[str, Any], where: str) -> tuple[str | None, int]:
    """``refines`` and its ``window``: how many lines after the rule it refines this one looks."""
    refines = raw.get("refines")
    if refines not in (None, "previous"):
        raise _err(where, "'refines' must be \"previous\"")
    window = raw.get("window", 0)
    if not isinstance(window, int) or window < 0 or (refines and window == 0):
        raise _err(where, "'window' must be a positive integer when 'refines' is set")
    return refines, window


def _requested_file(raw: dict[str, Any], where: str, patterns: tuple[re.Pattern[str], ...]) -> bool:
    """``requested_file``: the rule's lines are about one file each, named by a ``file`` group."""
    requested_file = raw.get("requested_file", False)
    if not isinstance(requested_file, bool):
        raise _err(where, "'requested_file' must be true or false")
    if requested_file and not all("file" in p.groupindex for p in patterns):
        raise _err(where, "with requested_file, every pattern needs a (?P<file>...) group")
    return requested_file


def _steps(raw: dict[str, Any], where: str) -> dict[str, frozenset[str]]:
    steps = {}
    for key in ("steps", "not_steps", "only_with"):
        value = raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and _ID_RE.match(v) for v in value):
            raise _err(where, f"'{key}' must be a list of step names (lower-case-with-dashes)")
        steps[key] = frozenset(value)
    return steps


def _check_placeholders(
    raw: dict[str, Any],
    where: str,
    patterns: tuple[re.Pattern[str], ...],
    defaults: dict[str, str],
    remedies: dict[str, str],
    fallback: dict[str, str],
) -> None:
    """Every placeholder must be filled on every match: by a group that every pattern has,
    a default, the context, or (for lookup rules) the library table."""
    groups = [set(p.groupindex) for p in patterns]
    always = set.intersection(*groups) | set(defaults) | CONTEXT_KEYS
    if raw.get("lookup"):
        always |= LOOKUP_KEYS
        if not all((g | set(defaults)) & set(LOOKUP_GROUPS) for g in groups):
            raise _err(where, f"with lookup, every pattern needs one of the groups {LOOKUP_GROUPS}")
    templates: dict[str, str] = {
        "detail": raw.get("detail", ""),
        "explanation": raw["explanation"],
        "capability": raw["capability"],
        "fallback_capability": raw.get("fallback_capability", ""),
    }
    templates.update({f"remedies.{k}": v for k, v in remedies.items()})
    templates.update({f"fallback_remedies.{k}": v for k, v in fallback.items()})
    for name, tmpl in templates.items():
        missing = _placeholders(tmpl, where, name) - always
        if name.startswith("fallback"):
            missing -= {"lib"}
        if missing:
            raise _err(
                where,
                f"'{name}' uses {sorted(missing)}, which not every pattern captures "
                "(add the group to every pattern or give a default)",
            )


def _parse_library(raw: Any, index: int) -> Library:
    where = f"library #{index + 1}"
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise _err(where, "each [[library]] needs a 'name'")
    where = f"library {raw['name']!r}"
    unknown = set(raw) - _LIBRARY_FIELDS
    if unknown:
        raise _err(where, f"unknown field(s) {sorted(unknown)}")
    missing = [p for p in PLATFORMS if not isinstance(raw.get(p), str) or not raw[p]]
    if missing:
        raise _err(where, f"missing package name for {missing}")
    return Library(
        name=raw["name"],
        headers=_str_list(raw.get("headers", []), where, "headers", allow_empty=True),
        link=_str_list(raw.get("link", []), where, "link", allow_empty=True),
        aliases=_str_list(raw.get("aliases", []), where, "aliases", allow_empty=True),
        tools=_str_list(raw.get("tools", []), where, "tools", allow_empty=True),
        packages={p: raw[p] for p in PLATFORMS},
    )


def parse_rules(text: str, *, source: str = "rules.toml") -> RuleSet:
    """Parse and validate rule-set TOML text. Raises :class:`RuleSetError`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RuleSetError(f"{source}: not valid TOML: {exc}") from None
    if data.get("schema") != 1:
        raise RuleSetError(f"{source}: 'schema = 1' is required")
    raw_rules = data.get("rule")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise RuleSetError(f"{source}: no [[rule]] entries")
    rules = [_parse_rule(r, i) for i, r in enumerate(raw_rules)]
    seen: set[str] = set()
    for r in rules:
        if r.id in seen:
            raise RuleSetError(f"{source}: duplicate rule id {r.id!r}")
        seen.add(r.id)
    for r in rules:
        unknown = sorted(r.only_with - seen)
        if unknown:
            raise RuleSetError(f"{source}: rule {r.id!r}: 'only_with' names no rule: {unknown}")
    noise_raw = data.get("noise", {})
    if not isinstance(noise_raw, dict):
        raise RuleSetError(f"{source}: [noise] must be a table")
    noise = _compile(noise_raw.get("patterns", []), "[noise]", "patterns", allow_empty=True)
    libs = [_parse_library(x, i) for i, x in enumerate(data.get("library", []))]
    by_header: dict[str, Library] = {}
    by_link: dict[str, Library] = {}
    by_alias: dict[str, Library] = {}
    by_tool: dict[str, Library] = {}
    names: set[str] = set()
    for lib in libs:
        if lib.name in names:
            raise RuleSetError(f"{source}: duplicate library {lib.name!r}")
        names.add(lib.name)
        for table, keys in (
            (by_header, lib.headers),
            (by_link, lib.link),
            (by_alias, (lib.name, *lib.aliases)),
            (by_tool, lib.tools),
        ):
            for k in keys:
                table.setdefault(k, lib)
                table.setdefault(k.lower(), lib)
    ordered = sorted(rules, key=lambda r: (-r.priority, r.order))
    version = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    return RuleSet(
        version=version,
        rules=tuple(ordered),
        noise=noise,
        libraries=tuple(libs),
        by_header=by_header,
        by_link=by_link,
        by_alias=by_alias,
        by_tool=by_tool,
    )


def rules_text() -> str:
    """The text of the shipped rules.toml."""
    return resources.files("builder.diagnosis").joinpath("rules.toml").read_text("utf-8")


@functools.cache
def load_rules(path: str | None = None) -> RuleSet:
    """The shipped rule set (or the one at ``path``), validated and compiled, cached."""
    if path is None:
        return parse_rules(rules_text())
    return parse_rules(Path(path).read_text("utf-8"), source=path)
