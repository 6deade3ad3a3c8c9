"""Every occurrence of a set of literal keywords in a block of a log, found in one pass.

The engine looks only at the lines that hold a keyword of a rule or of the context, so finding
those is most of what a scan costs. With ``ahocorasick_rs`` (the Rust ``aho-corasick`` crate: a
DFA over the block's UTF-8 bytes; the extra ``wheelyard[fast-diagnosis]``) that pass runs at a
few hundred MB/s whatever the number of keywords. Where it is not installed (it has no wheel for
musllinux), a regex of the keywords factored as a trie finds the same occurrences, several times
slower (Python's ``re`` tries the pattern at almost every position: with hundreds of keywords
nearly every letter starts one).
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable, Iterable
from typing import Any

if sys.version_info >= (3, 11):
    from re import _constants as sre_constants  # type: ignore[attr-defined]
    from re import _parser as sre_parse  # type: ignore[attr-defined]
else:  # pragma: no cover - Python 3.10
    import sre_constants
    import sre_parse

try:
    import ahocorasick_rs
except ImportError:  # pragma: no cover - a platform with no wheel of it
    ahocorasick_rs = None  # type: ignore[assignment]

NATIVE = ahocorasick_rs is not None  # tests turn it off to check the regex finder gives the same

# (index into KeywordFinder.words, start, end): byte offsets in the block
Occurrence = tuple[int, int, int]


def trie_pattern(words: Iterable[str]) -> str:
    """A regex matching any of ``words``, factored as a trie (Python's re tries the branches of
    a flat alternation one by one at every position; a trie is ~5x faster). At a position it
    matches the longest of the words that start there."""
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


def _parsed(pattern: re.Pattern[str]) -> Any:
    return _parse(pattern.pattern, pattern.flags)


@functools.lru_cache(maxsize=1024)
def _parse(source: str, flags: int) -> Any:
    """The parse tree of a pattern (read twice per rule pattern: its literal, its factors)."""
    return sre_parse.parse(source, flags)


def required_literal(pattern: re.Pattern[str]) -> str:
    """The longest run of plain characters that every match of ``pattern`` holds ("" when the
    pattern has none outside groups, repeats and alternations): a line without it needs no
    search. Read from the pattern's parse tree, so it is exact; case-insensitive patterns have none."""
    if pattern.flags & re.IGNORECASE:
        return ""
    best, run = "", ""
    for op, arg in _parsed(pattern):
        if op is sre_constants.LITERAL:
            run += chr(arg)
            continue
        best, run = max(best, run, key=len), ""
    return max(best, run, key=len)


MAX_FACTORS = 64  # strings a pattern's factor may be made of


def _strings(items: Any) -> set[str] | None:
    """Every string the parsed ``items`` match, when they match only a few fixed strings."""
    c = sre_constants
    out = {""}
    for op, arg in items:
        alts: set[str] | None
        if op is c.LITERAL:
            alts = {chr(arg)}
        elif op is c.IN and all(o is c.LITERAL for o, _ in arg):
            alts = {chr(a) for _, a in arg}
        elif op is c.BRANCH:
            alts = set()
            for branch in arg[1]:
                got = _strings(branch)
                if got is None:
                    return None
                alts |= got
        elif op is c.SUBPATTERN and not arg[1] and not arg[2]:  # a group that sets no flags
            alts = _strings(arg[3])
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT) and arg[0] == 0 and arg[1] == 1:
            alts = _strings(arg[2])
            if alts is not None:
                alts.add("")
        else:
            return None
        if alts is None or len(out) * len(alts) > MAX_FACTORS:
            return None
        out = {a + b for a in out for b in alts}
    return out


def required_factors(pattern: re.Pattern[str]) -> frozenset[str]:
    """Strings one of which every match of ``pattern`` holds (empty: none known). Like
    :func:`required_literal` but through alternations and optional parts, so that
    ``No module named '?(?:cgi|imp)`` gives the four strings it can start with: a line that
    holds none of them cannot match, and an automaton finds them all in one pass."""
    if pattern.flags & re.IGNORECASE:
        return frozenset()
    best: set[str] = set()

    def score(found: set[str]) -> tuple[int, int]:
        return (min(map(len, found)), -len(found)) if found else (0, 0)

    run = {""}
    for item in _parsed(pattern):
        alts = _strings([item])
        if alts is not None and len(run) * len(alts) <= MAX_FACTORS:
            run = {a + b for a in run for b in alts}
            continue
        best = max(best, run, key=score)
        run = alts if alts is not None else {""}
    best = max(best, run, key=score)
    return frozenset(best) if score(best)[0] >= 3 else frozenset()


class KeywordFinder:
    """Finds every occurrence of its :attr:`words` (overlapping ones too) in UTF-8 bytes."""

    def __init__(self, keywords: frozenset[str], *, native: bool) -> None:
        self.words: tuple[str, ...] = tuple(sorted(keywords))
        self.wordset = frozenset(self.words)
        self.native = native and ahocorasick_rs is not None
        encoded = [w.encode("utf-8") for w in self.words]
        self._find: Callable[[bytes | memoryview], list[Occurrence]]
        if not encoded:
            self._find = lambda data: []
        elif self.native:
            automaton = ahocorasick_rs.BytesAhoCorasick(encoded, implementation=ahocorasick_rs.Implementation.DFA)
            self._find = functools.partial(automaton.find_matches_as_indexes, overlapping=True)
        else:
            self._find = self._regex_finder(encoded)

    def _regex_finder(self, encoded: list[bytes]) -> Callable[[bytes | memoryview], list[Occurrence]]:
        index = {w: i for i, w in enumerate(encoded)}
        # the trie's match at a position is the longest word there; it stands for every word
        # that is a prefix of it
        prefixes = {w: [(index[p], len(p)) for p in encoded if w.startswith(p)] for w in encoded}
        search = re.compile(trie_pattern(w.decode("latin-1") for w in encoded).encode("latin-1")).search

        def find(data: bytes | memoryview) -> list[Occurrence]:
            buf = bytes(data)
            out: list[Occurrence] = []
            m = search(buf)
            while m is not None:
                s = m.start()
                out.extend((i, s, s + n) for i, n in prefixes[m.group()])
                m = search(buf, s + 1)
            return out

        return find

    def find(self, data: bytes, start: int = 0) -> list[Occurrence]:
        """The occurrences in ``data[start:]`` (offsets in ``data``); those of one line come
        together, lines in order (no keyword holds a newline)."""
        if not start:
            return self._find(data)
        return [(i, s + start, e + start) for i, s, e in self._find(memoryview(data)[start:])]


@functools.lru_cache(maxsize=64)
def _finder(keywords: frozenset[str], native: bool) -> KeywordFinder:
    return KeywordFinder(keywords, native=native)


def finder(keywords: frozenset[str]) -> KeywordFinder:
    """The finder of ``keywords`` (cached: a scan narrows its keywords a few times, and the same
    sets come back in every log)."""
    return _finder(keywords, NATIVE)
