"""Streaming matcher: one pass over a build log, bounded memory, rules from ``rules.toml``.

The log is processed in blocks of whole lines. One pass of a literal-keyword automaton
(every rule's ``keywords`` plus the context signals; keywords.py) over the block's bytes
finds the few lines worth a closer look and which keywords each holds; a line is tried only
against the rules of those keywords, and the context only sees lines holding one of its own.
Nothing but a handful of lines around each cause (for excerpts) is kept, so memory does not
grow with the log.
"""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Iterable
from typing import BinaryIO

from .causes import CauseWriter, Hit, WheelLookup
from .compiled import compiled
from .context import Context
from .keywords import KeywordFinder, Occurrence, finder
from .lines import CONTEXT_AFTER, CONTEXT_BEFORE, Numbered, around, rule_line
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
# The first line that looks like an error, for logs no rule explains: a form at the start of
# the line, or one anywhere that names "error" (tried only on lines that hold the word: a
# search of every position of a long compiler command line costs tens of microseconds).
_FALLBACK_START = re.compile(
    r"\s*(?:\|\s+)*(?:[\w.]*(?:Error|Exception|ExceptionGroup|Exit|Failure|Interrupt|NotFound|Unavailable)"
    r"|error|ERROR|fatal|FATAL|Error|Fatal)(?:\[\w+\])?:\s*\S"
    r"|\s*(?:\|\s+)*[\w.]*(?:Error|Exception)\s*$|wheelyard: build failed: "
    r"|\s*(?:cause|Caused by): \S"
)
_FALLBACK_ANYWHERE = re.compile(r"\b(?:fatal )?error:\s*\S|\bERROR:\s*\S|\berror C\d{4}|\berror trying to exec\b")


def _looks_failed(line: str) -> bool:
    if _FALLBACK_START.match(line) is not None:
        return True
    return ("error" in line or "ERROR" in line) and _FALLBACK_ANYWHERE.search(line) is not None


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


def _file_key(name: str) -> str:
    """A file name or NAME-VERSION as they compare: lower case, ``_`` and ``.`` as ``-``."""
    return name.lower().replace("_", "-").replace(".", "-")


def _lists_other_releases(hit: Hit, version: str | None) -> bool:
    """A whole list of releases pip skipped (``versions`` group) without the one asked for."""
    listed = re.findall(r"(?:^|; )(\S+) Requires-Python", hit.groups.get("versions", ""))
    return bool(listed and version) and _file_key(str(version)) not in {_file_key(v) for v in listed}


class Scanner:
    """Feed blocks of text (whole lines joined by newlines); then :meth:`result`."""

    def __init__(self, rules: RuleSet) -> None:
        self.rs = rules
        self.rules = rules.rules
        self._c = compiled(rules)
        self._kw_rules = self._c.kw_rules
        self._noise = self._c.noise
        self.ctx = Context()
        self.fallback: Hit | None = None
        self.hits: list[Hit] = []
        self.seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        self.worst: tuple[int, int] | None = None  # (priority, -line) of the least cause kept, when full
        self._floor = -1  # once MAX_CAUSES are kept: only rules above this priority can add one
        self._finder: KeywordFinder | None = None
        self._rebuild_prefilter()
        self.lineno = 0
        self.last_error = 0  # the last line that was a cause or looked like an error
        self.pending: list[Hit] = []
        self.file_hits: dict[str, Hit] = {}  # file name (normalised) -> its line, see _add_file_hit
        self.tail: deque[Numbered] = deque(maxlen=CONTEXT_BEFORE)

    def _rebuild_prefilter(self) -> None:
        """The keywords a line must hold to be looked at: those of the rules that can still add
        a cause, of the context, and (while they matter) of error-looking lines. Fewer than the
        finder's: its occurrences of the others are skipped (a new finder for the next block);
        more: a new finder now, and the rest of the block is searched again (see _scan)."""
        self._ctx_kws = frozenset(self.ctx.keywords())
        kws = self._c.words_above(self._floor) | self._ctx_kws
        # error-looking lines matter until the first is found, and after a success marker
        # (a failure after it means the log did not end in success)
        self._fallback_on = self.fallback is None or self.ctx.success_line > 0
        if self._fallback_on:
            kws |= _FALLBACK_KEYWORDS
        self._active = frozenset(kws)
        if self._finder is None or not self._active <= self._finder.wordset:
            self._finder = finder(self._active)
        self._narrowed = self._active != self._finder.wordset
        self._mark_words()

    def _mark_words(self) -> None:
        """Per word of the finder: whether it is looked for (``_live``; None: all are), and
        whether a line holding it is looked at (``_trigger``: a keyword, not only a factor)."""
        assert self._finder is not None
        fw = self._finder.words
        self._live = [w in self._active for w in fw] if self._narrowed else None
        triggers = self._c.keywords_above(self._floor) | self._ctx_kws
        if self._fallback_on:
            triggers |= _FALLBACK_KEYWORDS
        self._trigger = [w in triggers for w in fw]
        self._alone: dict[str, bool] = {}
        self._idle_words: dict[int, bool] = {}

    # -- the scan --------------------------------------------------------------------

    def feed(self, text: str) -> None:
        """Process ``text``: one or more complete lines separated by ``\\n``."""
        base = self.lineno
        if self.pending:
            self._fill_pending(text, base)
        if self._narrowed:
            self._finder = finder(self._active)
            self._narrowed = False
            self._mark_words()
        self._scan(text.encode("utf-8", "surrogatepass"), base)
        self.lineno = base + text.count("\n") + 1
        # keep the last lines for the next block's "before" context
        start = len(text)
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

    def _scan(self, data: bytes, base: int) -> None:
        """Look at every line of ``data`` (a block, UTF-8) that holds an active keyword."""
        fnd = self._finder
        assert fnd is not None
        occ: list[Occurrence] = fnd.find(data)
        n, count, rfind, find = len(data), len(occ), data.rfind, data.find
        no, pos, i = base + 1, 0, 0
        words, trigger, live = fnd.words, self._trigger, self._live
        while i < count:
            idx, s, _ = occ[i]
            i += 1
            if not trigger[idx]:
                continue  # a factor, or a word no longer looked for: alone it sends nowhere
            if (
                self._idle(idx)
                and (i < 2 or find(b"\n", occ[i - 2][2], s) >= 0)
                and (i >= count or find(b"\n", s, occ[i][1]) >= 0)
            ):
                continue  # the only word of its line, and alone it sends nowhere
            ls = rfind(b"\n", 0, s) + 1
            le = find(b"\n", s)
            if le < 0:
                le = n
            kws = {words[idx]}
            j = i - 2  # the line's occurrences are together: those before this one end in it
            while j >= 0 and occ[j][2] > ls:
                if live is None or live[occ[j][0]]:
                    kws.add(words[occ[j][0]])
                j -= 1
            while i < count and occ[i][1] < le:
                if live is None or live[occ[i][0]]:
                    kws.add(words[occ[i][0]])
                i += 1
            if not self._fallback_on and kws.isdisjoint(self._ctx_kws) and not self._can_match(kws):
                continue  # no rule can match it, and it says nothing about the build
            no += data.count(b"\n", pos, ls)
            pos = ls
            if not self._line(data, ls, le, no, kws):
                continue
            trigger, live = self._trigger, self._live  # the words changed
            if self._finder is not fnd:
                # more words than the block was searched for: search its rest again
                fnd = self._finder
                assert fnd is not None
                words = fnd.words
                occ = fnd.find(data, le + 1) if le < n else []
                count, i = len(occ), 0

    def _fill_pending(self, text: str, base: int) -> None:
        need = max(CONTEXT_AFTER - len(h.after) for h in self.pending)
        first = text.split("\n", need)[:need]
        for h in self.pending:
            k = CONTEXT_AFTER - len(h.after)
            h.after.extend((base + 1 + i, t) for i, t in enumerate(first[:k]))
        self.pending = [h for h in self.pending if len(h.after) < CONTEXT_AFTER]

    def _context(self, data: bytes, ls: int, le: int, no: int) -> tuple[list[Numbered], list[Numbered]]:
        return around(data, ls, le, no, self.tail)

    def _read_line(self, data: bytes, ls: int, le: int, kws: set[str]) -> tuple[str, set[str]]:
        """The line as rules see it and the active keywords it holds."""
        line, whole = rule_line(data, ls, le)
        if not whole:
            assert self._finder is not None
            words = self._finder.words
            kws = {words[i] for i, _, _ in self._finder.find(line.encode("utf-8", "surrogatepass"))} & self._active
        return line, kws

    def _line(self, data: bytes, ls: int, le: int, no: int, kws: set[str]) -> bool:
        """Look at one line; True when the keywords were changed."""
        line, kws = self._read_line(data, ls, le, kws)
        rebuilt = False
        had_success = self.ctx.success_line
        changed = not kws.isdisjoint(self._ctx_kws) and self.ctx.observe(line, no)
        if changed or (self.ctx.success_line and not had_success and not self._fallback_on):
            self._rebuild_prefilter()
            rebuilt = True
        step = self.ctx.step
        looks_failed = False
        if self._fallback_on:
            looks_failed = _looks_failed(line)
            if looks_failed or "Failed to build" in line or "Failed building" in line or "build failed" in line:
                self.last_error = no  # noise or not: a log that says this after "Successfully" failed
        # rules are in trial order, highest priority first: once MAX_CAUSES are kept, a rule no
        # more important than the least of them cannot add a cause, nor can any rule after it
        floor = self.worst[0] if self.worst is not None else -1
        for i in sorted(self._candidates(kws)):
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
                self._add_file_hit(rule, data, ls, le, no, line, groups)
                return rebuilt
            self._add(rule, data, ls, le, no, line, groups)
            if self.worst is not None and self.worst[0] != self._floor:
                # full: rules no more important than the least cause kept cannot add one, so
                # lines only they could match are no longer looked at
                self._floor = self.worst[0]
                self._rebuild_prefilter()
                rebuilt = True
            return rebuilt
        if looks_failed and self.fallback is None and not self._is_noise(line):
            before, after = self._context(data, ls, le, no)
            self.fallback = Hit(None, no, line, {}, before, after)
            if len(after) < CONTEXT_AFTER:
                self.pending.append(self.fallback)
            if not self.ctx.success_line:
                self._rebuild_prefilter()
                rebuilt = True
        return rebuilt

    def _idle(self, idx: int) -> bool:
        """A line holding only the finder's word ``idx`` is not looked at (remembered until the
        words change)."""
        got = self._idle_words.get(idx)
        if got is None:
            assert self._finder is not None
            word = self._finder.words[idx]
            got = not self._fallback_on and word not in self._ctx_kws and not self._can_match({word})
            self._idle_words[idx] = got
        return got

    def _can_match(self, kws: set[str]) -> bool:
        """A rule can match a line holding ``kws`` (for one word, remembered until the words change)."""
        if len(kws) != 1:
            return bool(self._candidates(kws))
        (word,) = kws
        got = self._alone.get(word)
        if got is None:
            got = self._alone[word] = bool(self._candidates(kws))
        return got

    def _candidates(self, kws: set[str]) -> set[int]:
        """Indexes of the rules that can still add a cause whose keywords the line holds, and
        for one of whose patterns it holds what every match of it holds."""
        kw_rules = self._kw_rules
        found: set[int] = set()
        for kw in kws:
            rules = kw_rules.get(kw)
            if rules is not None:
                found |= rules
        if not found:
            return found
        factors = self._c.factors
        priorities = self._c.priorities
        floor = self._floor
        return {i for i in found if priorities[i] > floor and ((f := factors[i]) is None or not f.isdisjoint(kws))}

    def _is_noise(self, line: str) -> bool:
        return self._noise.search(line) is not None

    def _add(self, rule: Rule, data: bytes, ls: int, le: int, no: int, line: str, groups: dict[str, str]) -> None:
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
        before, after = self._context(data, ls, le, no)
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
        self, rule: Rule, data: bytes, ls: int, le: int, no: int, line: str, groups: dict[str, str]
    ) -> None:
        """A line about one file of a release: kept aside (the first per file, a bounded number)
        until the log has said which release was asked for."""
        key = _file_key(groups["file"])
        if key in self.file_hits or len(self.file_hits) >= MAX_FILE_HITS:
            return
        before, after = self._context(data, ls, le, no)
        hit = Hit(rule, no, line, groups, before, after)
        self.file_hits[key] = hit
        if len(after) < CONTEXT_AFTER:
            self.pending.append(hit)

    def _asked(self) -> tuple[str | None, str | None]:
        """The release asked for: the log's, or pip's "No matching distribution found for NAME==VERSION"."""
        package, version = self.ctx.package()
        asked = [h.groups["requirement"] for h in self.hits if "==" in h.groups.get("requirement", "")]
        if not version and asked:
            package, version = asked[0].split("==", 1)
        return package, version

    def _requested_file_hits(self, package: str | None, version: str | None) -> list[Hit]:
        """The kept file line that names the release asked for (NAME-VERSION, normalised); none
        when no line names it (that release does not exist: pip's other lines are not the cause);
        the first one when the log does not say which release was asked for."""
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
        pkg, asked = self._asked()  # a list of skipped releases without the one asked says nothing of it
        found = [h for h in [*self.hits, *self._requested_file_hits(pkg, asked)] if not _lists_other_releases(h, asked)]
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
