"""Streaming matcher: one pass over a build log, bounded memory, rules from ``rules.toml``.

The log is processed in blocks of whole lines. One combined regex of literal keywords
(every rule's ``keywords`` plus the context signals) finds the few lines worth a closer
look; only those lines are tried against the rules' patterns. Nothing but a handful of
lines around each cause (for excerpts) is kept, so memory does not grow with the log.
"""

from __future__ import annotations

import functools
import os
import re
from collections import deque
from collections.abc import Iterable
from typing import Any, BinaryIO

from .causes import CauseWriter, Hit, WheelLookup
from .context import Context
from .model import SCHEMA_VERSION, Cause, Diagnosis, Remedy
from .reading import BLOCK_LINES, MAX_CARRY, READ_SIZE, blocks_from_binary, blocks_from_lines
from .rules import PLATFORMS, Rule, RuleSet, load_rules
from .wheels import fitting_wheels, host_platform, os_of

__all__ = [
    "BLOCK_LINES",
    "MAX_CARRY",
    "READ_SIZE",
    "SCHEMA_VERSION",
    "Cause",
    "Diagnosis",
    "Remedy",
    "Scanner",
    "WheelLookup",
    "diagnose",
    "diagnose_blocks",
    "diagnose_file",
    "diagnose_stream",
    "fitting_wheels",
]

MAX_CAUSES = 50
MAX_FILE_HITS = 2000  # lines about single files of a release kept until the release asked for is known
CONTEXT_BEFORE = 2
CONTEXT_AFTER = 3
MAX_LINE = 2000  # characters of a line that rules look at


# CI services put a timestamp or a marker before every line (GitHub Actions, Azure, GitLab,
# Jenkins' timestamper); rules see the line without it.
_CI_PREFIX = re.compile(
    r"^\ufeff?(?:\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?\s"
    r"|\[\d{4}-\d\d-\d\d[T ][\d:.,]+Z?\]\s?|\[?\d\d:\d\d:\d\d(?:[.,]\d+)?\]?\s"
    r"|##\[(?:error|warning|notice|debug|group|endgroup|section|command)\]"
    r"|section_(?:start|end):\d+:[\w.-]+\r?(?:\x1b\[0K)?)+"
)

# The first line that looks like an error, for logs no rule explains.
_FALLBACK_RE = re.compile(
    r"^\s*(?:\|\s+)*(?:[\w.]*(?:Error|Exception|ExceptionGroup|Exit|Failure|Interrupt|NotFound|Unavailable)"
    r"|error|ERROR|fatal|FATAL|Error|Fatal)(?:\[\w+\])?:\s*\S"
    r"|\b(?:fatal )?error:\s*\S|\bERROR:\s*\S|\berror C\d{4}|\berror trying to exec\b"
    r"|^\s*(?:\|\s+)*[\w.]*(?:Error|Exception)\s*$|^wheelyard: build failed: "
    r"|^\s*(?:cause|Caused by): \S"
)
_FALLBACK_KEYWORDS = frozenset(
    {
        "rror",
        "RROR",
        "xception",
        "fatal:",
        "FATAL",
        "Fatal",
        "Exit:",
        "Failure:",
        "Interrupt",
        "NotFound",
        "Unavailable",
        "build failed",
        "cause: ",
        "Caused by: ",
    }
)


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


@functools.lru_cache(maxsize=256)
def _keyword_regex(keywords: frozenset[str]) -> re.Pattern[str]:
    """The compiled trie of ``keywords`` (cached: a scan rebuilds its prefilter a few times, and
    the same sets come back in every log). A plain alternation at the top level lets the regex
    engine skip positions whose character starts no keyword without entering the pattern."""
    return re.compile(_trie_pattern(keywords) or "(?!)")


def _file_key(name: str) -> str:
    """A file name or NAME-VERSION as they compare: lower case, ``_`` and ``.`` as ``-``."""
    return name.lower().replace("_", "-").replace(".", "-")


class _Compiled:
    """What a scan needs from a rule set besides its rules, built once per rule set: which rules
    each keyword leads to, the noise regex, and the keywords of the rules above a priority."""

    def __init__(self, rules: RuleSet) -> None:
        self.rules = rules
        words = {k for r in rules.rules for k in r.keywords}
        # keyword -> indexes of the rules a line holding it must be tried against (a match of
        # the longest keyword at a position also stands for its prefixes)
        self.kw_rules = {
            kw: frozenset(i for i, r in enumerate(rules.rules) if any(kw.startswith(k) for k in r.keywords))
            for kw in words
        }
        self.noise = re.compile("|".join(f"(?:{p.pattern})" for p in rules.noise) or "(?!)")
        self._above: dict[int, frozenset[str]] = {}

    def keywords_above(self, floor: int) -> frozenset[str]:
        """The keywords of the rules whose priority is above ``floor``."""
        kws = self._above.get(floor)
        if kws is None:
            kws = frozenset(k for r in self.rules.rules if r.priority > floor for k in r.keywords)
            self._above[floor] = kws
        return kws


_COMPILED: dict[str, _Compiled] = {}


def _compiled(rules: RuleSet) -> _Compiled:
    c = _COMPILED.get(rules.version)
    if c is None or c.rules is not rules:
        if len(_COMPILED) >= 16:  # rule sets made by tests: keep a few
            _COMPILED.clear()
        c = _COMPILED[rules.version] = _Compiled(rules)
    return c


class Scanner:
    """Feed blocks of text (whole lines joined by newlines); then :meth:`result`."""

    def __init__(self, rules: RuleSet) -> None:
        self.rs = rules
        self.rules = rules.rules
        self._c = _compiled(rules)
        self._kw_rules = self._c.kw_rules
        self._noise = self._c.noise
        self.ctx = Context()
        self.fallback: Hit | None = None
        self.hits: list[Hit] = []
        self.seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        self.worst: tuple[int, int] | None = None  # (priority, -line) of the least cause kept, when full
        self._floor = -1  # once MAX_CAUSES are kept: only rules above this priority can add one
        self._line_kw = _keyword_regex(self._c.keywords_above(-1))
        self._rebuild_prefilter()
        self.lineno = 0
        self.last_error = 0  # the last line that was a cause or looked like an error
        self.pending: list[Hit] = []
        self.file_hits: dict[str, Hit] = {}  # file name (normalised) -> its line, see _add_file_hit
        self.tail: deque[tuple[int, str]] = deque(maxlen=CONTEXT_BEFORE)

    def _rebuild_prefilter(self) -> None:
        """The block-level regex: only lines holding a keyword of a rule that can still add a
        cause, of the context, or (while they matter) of error-looking lines are looked at."""
        kws = self._c.keywords_above(self._floor) | self.ctx.keywords()
        # error-looking lines matter until the first is found, and after a success marker
        # (a failure after it means the log did not end in success)
        self._fallback_on = self.fallback is None or self.ctx.success_line > 0
        if self._fallback_on:
            kws |= _FALLBACK_KEYWORDS
        self.prefilter = _keyword_regex(frozenset(kws))

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
            if self._line(text, ls, le, cur_no):
                search = self.prefilter.search
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

    def _line(self, text: str, ls: int, le: int, no: int) -> bool:
        """Look at one line; True when the prefilter was rebuilt."""
        line = text[ls:le] if le - ls <= MAX_LINE else text[ls : ls + MAX_LINE]
        if line[:1] in "0123456789#[s\ufeff":
            m = _CI_PREFIX.match(line)
            if m:
                line = line[m.end() :]
        rebuilt = False
        had_success = self.ctx.success_line
        if self.ctx.observe(line, no) or (self.ctx.success_line and not had_success and not self._fallback_on):
            self._rebuild_prefilter()
            rebuilt = True
        found = self._candidates(line)
        step = self.ctx.step
        looks_failed = False
        if self._fallback_on:
            looks_failed = _FALLBACK_RE.search(line) is not None
            if looks_failed or "Failed to build" in line or "Failed building" in line or "build failed" in line:
                self.last_error = no  # noise or not: a log that says this after "Successfully" failed
        # rules are in trial order, highest priority first: once MAX_CAUSES are kept, a rule no
        # more important than the least of them cannot add a cause, nor can any rule after it
        floor = self.worst[0] if self.worst is not None else -1
        for i in sorted(found):
            rule = self.rules[i]
            if rule.priority <= floor:
                break
            if rule.steps and step not in rule.steps:
                continue
            if rule.not_steps and step in rule.not_steps:
                continue
            m = rule.match(line)
            if m is None:
                continue
            if rule.refines is None and self._is_noise(line):
                return rebuilt
            groups = {k: v for k, v in m.groupdict().items() if v is not None}
            self.last_error = no
            if rule.requested_file:
                self._add_file_hit(rule, text, ls, le, no, line, groups)
                return rebuilt
            self._add(rule, text, ls, le, no, line, groups)
            if self.worst is not None and self.worst[0] != self._floor:
                # full: rules no more important than the least cause kept cannot add one, so
                # lines only they could match are no longer looked at
                self._floor = self.worst[0]
                self._line_kw = _keyword_regex(self._c.keywords_above(self._floor))
                self._rebuild_prefilter()
                rebuilt = True
            return rebuilt
        if looks_failed and self.fallback is None and not self._is_noise(line):
            before, after = self._context(text, ls, le, no)
            self.fallback = Hit(None, no, line, {}, before, after)
            if len(after) < CONTEXT_AFTER:
                self.pending.append(self.fallback)
            if not self.ctx.success_line:
                self._rebuild_prefilter()
                rebuilt = True
        return rebuilt

    def _candidates(self, line: str) -> set[int]:
        """Indexes of the rules whose keywords ``line`` holds (once MAX_CAUSES are kept, only of
        the rules that could still add a cause). The trie's match at a position is its longest
        keyword there, which stands for its prefixes too; every position that starts one is
        tried (search again from the next character), so overlapping keywords are all found."""
        search = self._line_kw.search
        kw_rules = self._kw_rules
        found: set[int] = set()
        km = search(line)
        while km is not None:
            found |= kw_rules[km.group()]
            km = search(line, km.start() + 1)
        return found

    def _is_noise(self, line: str) -> bool:
        return self._noise.search(line) is not None

    def _add(self, rule: Rule, text: str, ls: int, le: int, no: int, line: str, groups: dict[str, str]) -> None:
        if rule.refines == "previous":
            for h in reversed(self.hits):
                if h.line < no - rule.window:
                    break
                if h.rule is not None and h.rule.category == "compile-error":
                    self.seen.discard(h.key)
                    h.rule = rule
                    h.groups = {**h.groups, **groups}
                    h.orphan = False
                    self.seen.add(h.key)
                    return
        priority = rule.priority - 1 if rule.refines is not None else rule.priority
        # full: a cause no more important than the least kept one is later, so it loses (cheap
        # to decide: nothing is built for it)
        if self.worst is not None and priority <= self.worst[0]:
            return
        key = (rule.id, tuple(sorted(groups.items())))
        if key in self.seen:
            return
        before, after = self._context(text, ls, le, no)
        hit = Hit(rule, no, line, groups, before, after, orphan=rule.refines is not None)
        self.seen.add(hit.key)
        self.hits.append(hit)
        if len(after) < CONTEXT_AFTER:
            self.pending.append(hit)
        if len(self.hits) > MAX_CAUSES:
            # drop the least important cause (the latest among the lowest priority)
            worst = min(range(len(self.hits)), key=lambda i: (self.hits[i].priority, -self.hits[i].line))
            dropped = self.hits.pop(worst)
            self.seen.discard(dropped.key)
            if dropped in self.pending:
                self.pending.remove(dropped)
        if len(self.hits) >= MAX_CAUSES:
            least = min(self.hits, key=lambda h: (h.priority, -h.line))
            self.worst = (least.priority, -least.line)

    def _add_file_hit(
        self, rule: Rule, text: str, ls: int, le: int, no: int, line: str, groups: dict[str, str]
    ) -> None:
        """A line about one file of a release: kept aside (the first per file, a bounded number)
        until the log has said which release was asked for."""
        key = _file_key(groups["file"])
        if key in self.file_hits or len(self.file_hits) >= MAX_FILE_HITS:
            return
        before, after = self._context(text, ls, le, no)
        hit = Hit(rule, no, line, groups, before, after)
        self.file_hits[key] = hit
        if len(after) < CONTEXT_AFTER:
            self.pending.append(hit)

    def _requested_file_hits(self) -> list[Hit]:
        """The kept file line that names the release asked for (NAME-VERSION, normalised); none
        when no line names it (that release does not exist: pip's other lines are not the cause);
        the first one when the log does not say which release was asked for."""
        package, version = self.ctx.package()
        if not version:  # pip's "No matching distribution found for NAME==VERSION" says it too
            asked = [h.groups["requirement"] for h in self.hits if "==" in h.groups.get("requirement", "")]
            if asked:
                package, version = asked[0].split("==", 1)
        if package and version:
            want = _file_key(f"{package}-{version}-")
            return [h for k, h in self.file_hits.items() if k.startswith(want)][:1]
        return [min(self.file_hits.values(), key=lambda h: h.line)] if self.file_hits else []

    # -- the result ------------------------------------------------------------------

    def result(self, *, platform: str | None = None, wheel_lookup: WheelLookup | None = None) -> Diagnosis:
        ctx = self.ctx
        os_name = ctx.os_name()
        if platform is not None:
            plat, source = platform, "option"
        elif os_name == "linux":
            plat, source = ctx.distro(), "log"
        elif os_name in ("macos", "windows"):
            plat, source = os_name, "log"
        else:
            plat, source = host_platform(), "host"
        python = ctx.python()
        package, version = ctx.package()
        values = {
            "pyver": python or "3",
            "pyver_nodot": python.replace(".", "") if python else "3",
            "package": package or "<package>",
        }
        found = [*self.hits, *self._requested_file_hits()]
        matched = {h.rule.id for h in found if h.rule is not None}
        hits = [h for h in found if h.rule is not None and (not h.rule.only_with or h.rule.only_with & matched)]
        hits.sort(key=lambda h: (-h.priority, h.line))
        succeeded = ctx.success_line > self.last_error and not any(h.priority >= 90 for h in hits)
        writer = CauseWriter(self.rs, ctx)
        causes = [writer.cause(h, plat, values) for h in [*hits[:1], *sorted(hits[1:], key=lambda h: h.line)]]
        notes: tuple[Cause, ...] = ()
        if succeeded:
            notes = tuple(sorted(causes, key=lambda c: c.line))
            primary, causes = writer.succeeded(), []
        elif causes:
            primary = causes[0]
        else:
            primary = writer.unknown(self.fallback)
        advice = [] if succeeded else writer.advice(primary, package, version, python, plat, os_name, wheel_lookup)
        return Diagnosis(
            primary=primary,
            causes=tuple(causes),
            package=package,
            version=version,
            platform=plat,
            platform_source=source,
            os=os_name if platform is None else os_of(platform),
            python=python,
            advice=tuple(advice),
            lines=self.lineno,
            ruleset_version=self.rs.version,
            failed=not succeeded,
            notes=notes,
        )


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
    return diagnose_blocks(blocks_from_lines(lines), wheel_lookup=wheel_lookup, platform=platform)


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
    """Diagnose a build log read from a binary stream (UTF-8, UTF-16, Latin-1; see reading.py)."""
    return diagnose_blocks(blocks_from_binary(fh), wheel_lookup=wheel_lookup, platform=platform)
