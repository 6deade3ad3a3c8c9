"""Streaming matcher: one pass over a build log, bounded memory, rules from ``rules.toml``.

The log is processed in blocks of whole lines. One combined regex of literal keywords
(every rule's ``keywords`` plus the context signals) finds the few lines worth a closer
look; only those lines are tried against the rules' patterns. Nothing but a handful of
lines around each cause (for excerpts) is kept, so memory does not grow with the log.
"""

from __future__ import annotations

import os
import re
import sys
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from packaging.tags import Tag, compatible_tags, cpython_tags, mac_platforms
from packaging.utils import canonicalize_name, parse_wheel_filename

from .rules import LOOKUP_GROUPS, PLATFORMS, Library, Rule, RuleSet, load_rules

SCHEMA_VERSION = 1
MAX_CAUSES = 50
CONTEXT_BEFORE = 2
CONTEXT_AFTER = 3
MAX_LINE = 2000  # characters of a line that rules look at
BLOCK_LINES = 8192
READ_SIZE = 1 << 20
MAX_CARRY = 1 << 20  # longest line kept while reading a file; the rest is skipped

WheelLookup = Callable[[str, str], list[str]]

# ---------------------------------------------------------------------------------------
# Context signals: platform, interpreter, package.
# ---------------------------------------------------------------------------------------

# (keyword, regex, os, distro) — a line containing the keyword and matching the regex
# votes for that OS (and distro, on Linux).
_PLATFORM_SIGNALS: tuple[tuple[str, str, str, str | None], ...] = (
    (
        "linux-gnu",
        r"x86_64-linux-gnu|aarch64-linux-gnu|i686-linux-gnu|arm-linux-gnueabihf",
        "linux",
        "debian",
    ),
    ("dist-packages", r"/dist-packages/", "linux", "debian"),
    ("apt", r"\bapt(?:-get)? install\b|\bdpkg\b", "linux", "debian"),
    ("/usr/include", r"/usr/include", "linux", None),
    ("linux", r"\blinux[-_](?:x86_64|aarch64|i686|armv7l)|manylinux", "linux", None),
    ("redhat-linux", r"redhat-linux", "linux", "fedora"),
    ("dnf", r"\bdnf install\b|\byum install\b|\.fc\d\d\b|\.el[89]\b", "linux", "fedora"),
    ("musl", r"linux-musl|ld-musl|musl-gcc", "linux", "alpine"),
    ("apk", r"\bapk add\b|alpine", "linux", "alpine"),
    ("lpine", r"[Aa]lpine", "linux", "alpine"),
    (":\\", r"\b[A-Za-z]:\\", "windows", None),
    ("win32", r"\bwin32\b|win_amd64|win-amd64|win_arm64", "windows", None),
    ("MSVC", r"MSVC|cl\.exe|Visual Studio|\.vcxproj", "windows", None),
    ("macosx", r"macosx[-_]\d", "macos", None),
    (".dylib", r"\.dylib\b", "macos", None),
    ("xcrun", r"\bxcrun\b|Xcode|CommandLineTools", "macos", None),
    ("/Users/", r"^\s*/Users/|\s/Users/", "macos", None),
    ("/opt/homebrew", r"/opt/homebrew|/usr/local/Cellar", "macos", None),
    ("/private/var/folders", r"/private/var/folders", "macos", None),
    ("darwin", r"\bdarwin\b|apple-darwin", "macos", None),
    ("/home/", r"(?:^|\s)/home/", "linux", None),
)
_PLATFORM_FREEZE = 40  # votes after which the platform guess is final

_PY_RE = re.compile(
    r"python(3\.\d{1,2})\b|cpython-3(\d{1,2})\b|\bcp3(\d{1,2})\b|Python:? v?(3\.\d{1,2})\.\d"
    r"|(?:lib|temp)\.[\w.-]+-(3\.\d{1,2})\b|\] v(3\.\d{1,2})\.\d"
)
_PY_KEYWORDS = ("python3.", "cpython-3", "cp3", "Python 3.", "Python: 3.", "] v3.", "-3.")
_PY_FREEZE = 40

_PKG_RES: tuple[tuple[int, re.Pattern[str]], ...] = (
    (4, re.compile(r"Failed building wheel for (?P<name>[\w.-]+)")),
    (4, re.compile(r"Running setup\.py install for (?P<name>[\w.-]+)")),
    (3, re.compile(r"Building wheel for (?P<name>[\w.-]+) \(")),
    (3, re.compile(r"Running setup\.py bdist_wheel for (?P<name>[\w.-]+)")),
    (2, re.compile(r"Complete output from command python setup\.py egg_info")),
    (
        1,
        re.compile(
            r"(?:Downloading|Using cached|Processing|Downloading/unpacking)\s+(?:\S*/)?"
            r"(?P<file>(?P<name>[A-Za-z0-9][\w.]*?)-(?P<version>\d[\w.!+]*)\.(?:tar\.gz|zip|tar\.bz2))"
        ),
    ),
    (1, re.compile(r"^\s*Processing \.{0,2}/?(?:[^\s/]+/)*(?P<name>[A-Za-z0-9][\w.-]*?)/?\s*$")),
    (
        0,
        re.compile(r"Collecting (?P<name>[A-Za-z0-9][\w.-]*)(?:\[[^\]]*\])?(?:==(?P<version>[\w.!+]+))?"),
    ),
)
_BUILT_OK_RE = re.compile(
    r"Building wheel for (?P<name>[\w.-]+) \(.*finished with status 'done'"
    r"|Created wheel for (?P<name2>[\w.-]+):"
)
_PKG_KEYWORDS = (
    "Created wheel for",
    "Failed building wheel for",
    "Running setup.py",
    "Building wheel for",
    "Collecting ",
    "Downloading",
    "Using cached",
    "Processing ",
    "egg_info",
)
_SDIST_RE = re.compile(
    r"Building wheel for \S+ \((?:pyproject\.toml|setup\.py)\)"
    r"|Running setup\.py (?:install|bdist_wheel) for"
    r"|\.tar\.gz\b|\.zip\b|Preparing metadata \(pyproject\.toml\)"
    r"|Getting requirements to build wheel"
    r"|Installing build dependencies|setup\.py egg_info"
)
_ARCH_RE = re.compile(r"\b(x86_64|amd64|aarch64|arm64|i686|armv7l|ppc64le|s390x|win32|universal2)\b")

_FALLBACK_RE = re.compile(
    r"^\s*(?:[\w.]+(?:Error|Exception)|error|ERROR|fatal|FATAL|Error)(?:\[\w+\])?:\s*\S"
    r"|\b(?:fatal )?error:\s*\S|\berror C\d{4}"
)
_FALLBACK_KEYWORDS = ("rror:", "RROR:", "Exception:", "fatal:", "error C")


@dataclass(frozen=True)
class Remedy:
    """How to fix a cause on one platform (``rust`` and ``any`` apply everywhere)."""

    platform: str
    text: str


@dataclass(frozen=True)
class Cause:
    """One recognised failure in the log."""

    category: str
    rule: str
    line: int  # 1-based line number in the input; 0 when there is no such line
    text: str  # the line itself
    detail: str
    explanation: str
    excerpt: str  # a few lines around ``line``, as they were
    excerpt_start: int  # line number of the excerpt's first line
    remedies: tuple[Remedy, ...]  # the diagnosis platform's remedy first
    capability: str
    priority: int
    groups: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "rule": self.rule,
            "line": self.line,
            "text": self.text,
            "detail": self.detail,
            "explanation": self.explanation,
            "excerpt": self.excerpt,
            "excerpt_start": self.excerpt_start,
            "remedies": [{"platform": r.platform, "text": r.text} for r in self.remedies],
            "capability": self.capability,
            "priority": self.priority,
            "groups": dict(self.groups),
        }


@dataclass(frozen=True)
class Diagnosis:
    """What broke: the primary cause, all causes in order, and context from the log."""

    primary: Cause
    causes: tuple[Cause, ...]
    package: str | None
    version: str | None
    platform: str  # debian | fedora | alpine | macos | windows
    platform_source: str  # log | host | option
    os: str  # linux | macos | windows | unknown
    python: str | None  # "3.12", when the log shows it
    advice: tuple[str, ...]
    lines: int
    ruleset_version: str

    @property
    def diagnosed(self) -> bool:
        return self.primary.category != "unknown"

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "ruleset_version": self.ruleset_version,
            "diagnosed": self.diagnosed,
            "primary": self.primary.to_dict(),
            "causes": [c.to_dict() for c in self.causes],
            "package": self.package,
            "version": self.version,
            "platform": self.platform,
            "platform_source": self.platform_source,
            "os": self.os,
            "python": self.python,
            "advice": list(self.advice),
            "lines": self.lines,
        }


@dataclass
class _Hit:
    rule: Rule | None
    line: int
    text: str
    groups: dict[str, str]
    before: list[tuple[int, str]]
    after: list[tuple[int, str]] = field(default_factory=list)
    orphan: bool = False  # a "refines" rule with no earlier error to refine

    @property
    def priority(self) -> int:
        if self.rule is None:
            return -1
        return self.rule.priority - 1 if self.orphan else self.rule.priority


def _trie_pattern(words: Iterable[str]) -> str:
    """A regex matching any of ``words``, factored as a trie (Python's re tries the
    branches of a flat alternation one by one at every position; a trie is ~5x faster)."""
    trie: dict[str, Any] = {}
    for w in set(words):
        node = trie
        for ch in w:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: dict[str, Any]) -> str:
        alts = [re.escape(ch) + build(sub) for ch, sub in sorted(node.items()) if ch]
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        if "" in node:
            return f"(?:{body})?" if len(alts) == 1 else body + "?"
        return body

    return build(trie)


def _keyword_regex(keywords: Iterable[str]) -> re.Pattern[str]:
    return re.compile(_trie_pattern(keywords))


class Scanner:
    """Feed blocks of text (whole lines joined by newlines); then :meth:`result`."""

    def __init__(self, rules: RuleSet) -> None:
        self.rs = rules
        self.rules = rules.rules
        self._rule_keywords = {k for r in rules.rules for k in r.keywords}
        # keyword -> indexes of the rules that a line containing it must be tried against
        # (a match of the longest keyword at a position also stands for its prefixes)
        kw_rules: dict[str, set[int]] = {}
        for kw in self._rule_keywords:
            kw_rules[kw] = {i for i, r in enumerate(rules.rules) if any(kw.startswith(k) for k in r.keywords)}
        self._kw_rules = {k: frozenset(v) for k, v in kw_rules.items()}
        self._line_kw = re.compile("(?=(" + _trie_pattern(self._rule_keywords) + "))")
        self._noise = re.compile("|".join(f"(?:{p.pattern})" for p in rules.noise) or "(?!)")
        self._platform_kw = {s[0] for s in _PLATFORM_SIGNALS}
        self._platform_res = tuple((kw, re.compile(rx), os_, distro) for kw, rx, os_, distro in _PLATFORM_SIGNALS)
        self._py_on = True
        self._platform_on = True
        self._rebuild_prefilter()
        self.lineno = 0
        self.hits: list[_Hit] = []
        self.seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        self.fallback: _Hit | None = None
        self.pending: list[_Hit] = []
        self.tail: deque[tuple[int, str]] = deque(maxlen=CONTEXT_BEFORE)
        self.os_votes: Counter[str] = Counter()
        self.distro_votes: Counter[str] = Counter()
        self.py_votes: Counter[str] = Counter()
        self.arch_votes: Counter[str] = Counter()
        # package name -> (rank, name as written); names whose wheel was built fine
        self.packages: dict[str, tuple[tuple[int, int, int], str]] = {}
        self.built_ok: set[str] = set()
        self.versions: dict[str, str] = {}
        self.sdist = False

    def _rebuild_prefilter(self) -> None:
        kws = set(self._rule_keywords) | set(_PKG_KEYWORDS) | set(_FALLBACK_KEYWORDS)
        kws.add("Preparing metadata")
        if self._platform_on:
            kws |= self._platform_kw
        if self._py_on:
            kws |= set(_PY_KEYWORDS)
        self.prefilter = _keyword_regex(kws)

    # -- the scan --------------------------------------------------------------------

    def feed(self, text: str) -> None:
        """Process ``text``: one or more complete lines separated by ``\\n``."""
        base = self.lineno
        if self.pending:
            self._fill_pending(text, base)
        search = self.prefilter.search
        cur_no = base + 1
        cur_pos = 0
        m = search(text)
        n = len(text)
        while m is not None:
            s = m.start()
            ls = text.rfind("\n", 0, s) + 1
            le = text.find("\n", s)
            if le < 0:
                le = n
            cur_no += text.count("\n", cur_pos, ls)
            cur_pos = ls
            self._line(text, ls, le, cur_no)
            if le >= n:
                break
            m = search(text, le + 1)
        self.lineno = base + text.count("\n") + 1
        # keep the last lines for the next block's "before" context
        start = n
        for _ in range(CONTEXT_BEFORE):
            j = text.rfind("\n", 0, start)
            if j < 0:
                start = -1
                break
            start = j
        tail_lines = text[start + 1 :].split("\n")
        first_no = self.lineno - len(tail_lines) + 1
        for i, t in enumerate(tail_lines):
            self.tail.append((first_no + i, t))

    def _fill_pending(self, text: str, base: int) -> None:
        need = max(CONTEXT_AFTER - len(h.after) for h in self.pending)
        first = text.split("\n", need)[:need]
        for h in self.pending:
            k = CONTEXT_AFTER - len(h.after)
            h.after.extend((base + 1 + i, t) for i, t in enumerate(first[:k]))
        self.pending = [h for h in self.pending if len(h.after) < CONTEXT_AFTER]

    def _context(self, text: str, ls: int, le: int, no: int) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
        before: list[tuple[int, str]] = []
        p = ls
        k = 0
        while k < CONTEXT_BEFORE and p > 0:
            q = text.rfind("\n", 0, p - 1) + 1
            before.append((no - k - 1, text[q : p - 1]))
            p = q
            k += 1
        if k < CONTEXT_BEFORE:
            for item in reversed(self.tail):
                if k >= CONTEXT_BEFORE:
                    break
                if item[0] < no - k:
                    before.append(item)
                    k += 1
        before.reverse()
        after: list[tuple[int, str]] = []
        p = le
        while len(after) < CONTEXT_AFTER and p < len(text):
            q = text.find("\n", p + 1)
            if q < 0:
                q = len(text)
            after.append((no + len(after) + 1, text[p + 1 : q]))
            p = q
        return before, after

    def _line(self, text: str, ls: int, le: int, no: int) -> None:
        line = text[ls:le] if le - ls <= MAX_LINE else text[ls : ls + MAX_LINE]
        self._observe(line)
        found: set[int] = set()
        kw_rules = self._kw_rules
        for km in self._line_kw.finditer(line):
            found |= kw_rules.get(km.group(1), frozenset())
        for i in sorted(found):
            rule = self.rules[i]
            m = rule.match(line)
            if m is None:
                continue
            if rule.refines is None and self._is_noise(line):
                return
            groups = {k: v for k, v in m.groupdict().items() if v is not None}
            self._add(rule, text, ls, le, no, line, groups)
            return
        if self.fallback is None and _FALLBACK_RE.search(line) and not self._is_noise(line):
            before, after = self._context(text, ls, le, no)
            self.fallback = _Hit(None, no, line, {}, before, after)
            if len(after) < CONTEXT_AFTER:
                self.pending.append(self.fallback)

    def _is_noise(self, line: str) -> bool:
        return self._noise.search(line) is not None

    def _add(self, rule: Rule, text: str, ls: int, le: int, no: int, line: str, groups: dict[str, str]) -> None:
        if rule.refines == "previous":
            for h in reversed(self.hits):
                if h.line < no - rule.window:
                    break
                if h.rule is not None and h.rule.category == "compile-error":
                    h.rule = rule
                    h.groups = {**h.groups, **groups}
                    h.orphan = False
                    return
        key = (rule.id, tuple(sorted(groups.items())))
        if key in self.seen:
            return
        self.seen.add(key)
        before, after = self._context(text, ls, le, no)
        hit = _Hit(rule, no, line, groups, before, after, orphan=rule.refines is not None)
        self.hits.append(hit)
        if len(after) < CONTEXT_AFTER:
            self.pending.append(hit)
        if len(self.hits) > MAX_CAUSES:
            # drop the least important cause (the latest among the lowest priority)
            worst = min(range(len(self.hits)), key=lambda i: (self.hits[i].priority, -self.hits[i].line))
            dropped = self.hits.pop(worst)
            if dropped in self.pending:
                self.pending.remove(dropped)

    def _observe(self, line: str) -> None:
        if self._platform_on:
            for kw, rx, os_, distro in self._platform_res:
                if kw in line and rx.search(line):
                    self.os_votes[os_] += 1
                    if distro:
                        self.distro_votes[distro] += 1
                    m = _ARCH_RE.search(line)
                    if m:
                        self.arch_votes[m.group(1)] += 1
            if sum(self.os_votes.values()) >= _PLATFORM_FREEZE:
                self._platform_on = False
                self._rebuild_prefilter()
        if self._py_on and any(map(line.__contains__, _PY_KEYWORDS)):
            for m in _PY_RE.finditer(line):
                v = next(g for g in m.groups() if g is not None)
                self.py_votes[v if "." in v else f"3.{v}"] += 1
            if sum(self.py_votes.values()) >= _PY_FREEZE:
                self._py_on = False
                self._rebuild_prefilter()
        if any(map(line.__contains__, _PKG_KEYWORDS)) or "Preparing metadata" in line:
            if _SDIST_RE.search(line):
                self.sdist = True
            ok = _BUILT_OK_RE.search(line)
            if ok:
                self.built_ok.add(canonicalize_name(ok.group("name") or ok.group("name2")))
                return
            for level, rx in _PKG_RES:
                m = rx.search(line)
                if m is None:
                    continue
                gd = m.groupdict()
                name = gd.get("name")
                if not name:
                    break
                key = canonicalize_name(name)
                if gd.get("version"):
                    self.versions[key] = gd["version"].rstrip(".")
                indent = len(line) - len(line.lstrip())
                # higher level first, then less indented; among equals the latest "build"
                # event, but the first download/collect
                rank = (level, -indent, self.lineno if level >= 3 else -self.lineno)
                old = self.packages.get(key)
                if (old is None or rank > old[0]) and (old is not None or len(self.packages) < 1000):
                    self.packages[key] = (rank, name)
                break

    # -- the result ------------------------------------------------------------------

    def result(self, *, platform: str | None = None, wheel_lookup: WheelLookup | None = None) -> Diagnosis:
        os_name = self.os_votes.most_common(1)[0][0] if self.os_votes else "unknown"
        if platform is not None:
            plat, source = platform, "option"
        elif os_name == "linux":
            plat = self.distro_votes.most_common(1)[0][0] if self.distro_votes else "debian"
            source = "log"
        elif os_name in ("macos", "windows"):
            plat, source = os_name, "log"
        else:
            plat, source = host_platform(), "host"
        python = self.py_votes.most_common(1)[0][0] if self.py_votes else None
        cands = [v for k, v in self.packages.items() if k not in self.built_ok]
        package = max(cands)[1] if cands else None
        version = self.versions.get(canonicalize_name(package)) if package else None
        ctx = {
            "pyver": python or "3",
            "pyver_nodot": python.replace(".", "") if python else "3",
            "package": package or "<package>",
        }
        hits = sorted(self.hits, key=lambda h: (-h.priority, h.line))
        causes: list[Cause] = []
        if hits:
            primary_hit = hits[0]
            rest = sorted(hits[1:], key=lambda h: h.line)
            causes = [self._cause(h, plat, ctx) for h in [primary_hit, *rest]]
        else:
            causes = [self._unknown(plat)]
        primary = causes[0]
        advice = self._advice(primary, package, version, python, plat, os_name, wheel_lookup)
        return Diagnosis(
            primary=primary,
            causes=tuple(causes) if hits else (),
            package=package,
            version=version,
            platform=plat,
            platform_source=source,
            os=os_name if platform is None else _os_of(platform),
            python=python,
            advice=tuple(advice),
            lines=self.lineno,
            ruleset_version=self.rs.version,
        )

    def _excerpt(self, h: _Hit) -> tuple[str, int]:
        rows = [*h.before, (h.line, h.text), *h.after]
        return "\n".join(t for _, t in rows), rows[0][0]

    def _unknown(self, plat: str) -> Cause:
        h = self.fallback
        if h is None:
            return Cause(
                "unknown",
                "unknown",
                0,
                "",
                "",
                "No known build failure was found in the log.",
                "",
                0,
                (),
                "",
                0,
            )
        excerpt, start = self._excerpt(h)
        return Cause(
            category="unknown",
            rule="unknown",
            line=h.line,
            text=h.text,
            detail="",
            explanation="No rule matched; this is the first line that looks like an error.",
            excerpt=excerpt,
            excerpt_start=start,
            remedies=(),
            capability="",
            priority=0,
        )

    def _cause(self, h: _Hit, plat: str, ctx: dict[str, str]) -> Cause:
        rule = h.rule
        assert rule is not None
        values: dict[str, str] = {**ctx, **rule.defaults, **h.groups}
        lib: Library | None = None
        if rule.lookup:
            for g in LOOKUP_GROUPS:
                if g in values:
                    lib = self.rs.find_library(g, values[g])
                    if lib is not None:
                        break
            lookup_value = next((values[g] for g in LOOKUP_GROUPS if g in values), "")
        remedies_src = rule.remedies
        capability_t = rule.capability
        if rule.lookup and lib is None:
            values["lib"] = lookup_value
            values["pkg"] = "package unknown"
            if rule.fallback_remedies:
                remedies_src = rule.fallback_remedies
            if rule.fallback_capability:
                capability_t = rule.fallback_capability
        elif lib is not None:
            values["lib"] = lib.name
            values["pkg"] = lib.packages.get(plat, lib.packages["debian"])

        def fill(t: str, extra: Mapping[str, str] | None = None) -> str:
            return t.format_map({**values, **(extra or {})})

        remedies: list[Remedy] = []
        order = [plat, *[p for p in PLATFORMS if p != plat], "rust", "any"]
        for p in order:
            if p in remedies_src:
                extra = {"pkg": lib.packages[p]} if lib is not None and p in PLATFORMS else None
                remedies.append(Remedy(p, fill(remedies_src[p], extra)))
        excerpt, start = self._excerpt(h)
        return Cause(
            category=rule.category,
            rule=rule.id,
            line=h.line,
            text=h.text,
            detail=fill(rule.detail),
            explanation=fill(rule.explanation),
            excerpt=excerpt,
            excerpt_start=start,
            remedies=tuple(remedies),
            capability=fill(capability_t),
            priority=h.priority,
            groups=dict(h.groups),
        )

    def _advice(
        self,
        primary: Cause,
        package: str | None,
        version: str | None,
        python: str | None,
        plat: str,
        os_name: str,
        wheel_lookup: WheelLookup | None,
    ) -> list[str]:
        out: list[str] = []
        # pip could not get the package itself: no sdist was built, so no wheel advice (unless the
        # rule says the fetch that failed was the build's own, as cargo's crates are).
        fetch = primary.category in ("network-failure", "no-distribution") and not self.rs.rule(primary.rule).in_build
        if self.sdist and package and not fetch:
            out.append(
                f"pip built {package} from source (an sdist): no wheel it could use was "
                "found for this interpreter and platform."
            )
            if wheel_lookup is not None and version:
                try:
                    files = wheel_lookup(package, version)
                except Exception as exc:  # the lookup is the caller's; never fail on it
                    out.append(f"Could not ask upstream for wheels ({exc.__class__.__name__}).")
                    files = []
                fits = fitting_wheels(files, python, os_name, self._arch())
                if fits:
                    out.append(
                        f"Upstream has a wheel that fits: {fits[0]}. An older pip may not know "
                        "its platform tag: python -m pip install --upgrade pip, then retry."
                    )
                elif files:
                    out.append(
                        f"Upstream has {len(files)} wheel(s) for {package} {version}, "
                        "none for this interpreter/platform."
                    )
        target = package or "<package>"
        if package and version:
            target = f"{package}=={version}"
        out.append(f"Re-run to confirm: python -m pip install --no-cache-dir -v {target}")
        return out

    def _arch(self) -> str | None:
        return self.arch_votes.most_common(1)[0][0] if self.arch_votes else None


def _os_of(plat: str) -> str:
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


# ---------------------------------------------------------------------------------------
# Entry points.
# ---------------------------------------------------------------------------------------


def _blocks_from_lines(lines: Iterable[str]) -> Iterator[str]:
    batch: list[str] = []
    size = 0
    for item in lines:
        batch.append(item)
        size += len(item)
        if len(batch) >= BLOCK_LINES or size >= READ_SIZE:
            yield _join(batch)
            batch = []
            size = 0
    if batch:
        yield _join(batch)


def _join(batch: list[str]) -> str:
    text = "\n".join(s[:-1] if s.endswith("\n") else s for s in batch)
    return text.replace("\r\n", "\n") if "\r" in text else text


def _blocks_from_binary(fh: BinaryIO) -> Iterator[str]:
    carry = b""
    skipping = False
    while True:
        chunk = fh.read(READ_SIZE)
        if not chunk:
            break
        if skipping:
            nl = chunk.find(b"\n")
            if nl < 0:
                continue
            chunk = chunk[nl:]  # keep the newline: it ends the truncated line
            skipping = False
        data = carry + chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            if len(data) > MAX_CARRY:
                carry, skipping = data[:MAX_CARRY], True
            else:
                carry = data
            continue
        carry = data[cut + 1 :]
        if len(carry) > MAX_CARRY:
            carry, skipping = carry[:MAX_CARRY], True
        yield _decode(data[:cut])
    if carry:
        yield _decode(carry)


def _decode(b: bytes) -> str:
    text = b.decode("utf-8", "replace")
    return text.replace("\r\n", "\n") if "\r" in text else text


def diagnose_blocks(
    blocks: Iterable[str],
    *,
    wheel_lookup: WheelLookup | None = None,
    platform: str | None = None,
    rules: RuleSet | None = None,
) -> Diagnosis:
    scanner = Scanner(rules or load_rules())
    for block in blocks:
        scanner.feed(block)
    return scanner.result(platform=platform, wheel_lookup=wheel_lookup)


def diagnose(
    lines: Iterable[str], *, wheel_lookup: WheelLookup | None = None, platform: str | None = None
) -> Diagnosis:
    """Diagnose a build log given as an iterable of lines (with or without newlines)."""
    if platform is not None and platform not in PLATFORMS:
        raise ValueError(f"unknown platform {platform!r}; use one of {', '.join(PLATFORMS)}")
    return diagnose_blocks(_blocks_from_lines(lines), wheel_lookup=wheel_lookup, platform=platform)


def diagnose_file(
    path: str | os.PathLike[str],
    *,
    wheel_lookup: WheelLookup | None = None,
    platform: str | None = None,
) -> Diagnosis:
    """Diagnose the build log at ``path`` (read in blocks; any encoding, bad bytes replaced)."""
    if platform is not None and platform not in PLATFORMS:
        raise ValueError(f"unknown platform {platform!r}; use one of {', '.join(PLATFORMS)}")
    with open(path, "rb") as fh:
        return diagnose_stream(fh, wheel_lookup=wheel_lookup, platform=platform)


def diagnose_stream(fh: BinaryIO, *, wheel_lookup: WheelLookup | None = None, platform: str | None = None) -> Diagnosis:
    """Diagnose a build log read from a binary stream."""
    return diagnose_blocks(_blocks_from_binary(fh), wheel_lookup=wheel_lookup, platform=platform)
