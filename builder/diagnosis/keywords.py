"""Every occurrence of a set of literal keywords in a block of a log, found in one pass.

The engine looks only at the lines that hold a keyword of a rule or of the context, so finding
those is most of what a scan costs. With ``ahocorasick_rs`` (the Rust ``aho-corasick`` crate: a
DFA over the block's UTF-8 bytes) that pass runs at a few hundred MB/s whatever the number of
keywords. Where it cannot be installed (no wheel for the platform), a regex of the keywords
factored as a trie finds the same occurrences, several times slower (Python's ``re`` tries the
pattern at almost every position: with hundreds of keywords nearly every letter starts one).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from typing import Any

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
