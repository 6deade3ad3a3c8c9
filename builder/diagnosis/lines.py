"""A line of a block as the rules see it, and the lines around it for an excerpt.

A block is scanned as UTF-8 bytes (keywords.py); a line is decoded only when a keyword sends the
engine to it. Rules see its first ``MAX_LINE`` characters without a CI service's prefix.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

CONTEXT_BEFORE = 2
CONTEXT_AFTER = 3
MAX_LINE = 2000  # characters of a line that rules look at

Numbered = tuple[int, str]  # (line number, text)

# CI services put a timestamp or a marker before every line (GitHub Actions, Azure, GitLab,
# Jenkins' timestamper); rules see the line without it.
_CI_PREFIX = re.compile(
    r"^\ufeff?(?:\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?\s"
    r"|\[\d{4}-\d\d-\d\d[T ][\d:.,]+Z?\]\s?|\[?\d\d:\d\d:\d\d(?:[.,]\d+)?\]?\s"
    r"|##\[(?:error|warning|notice|debug|group|endgroup|section|command)\]"
    r"|section_(?:start|end):\d+:[\w.-]+\r?(?:\x1b\[0K)?)+"
)


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogatepass")


def rule_line(data: bytes, ls: int, le: int) -> tuple[str, bool]:
    """The line ``data[ls:le]`` as rules see it, and whether it is all of the line's bytes (then
    the keywords found in the block are the line's; else they must be looked for again)."""
    whole = le - ls <= MAX_LINE  # then at most MAX_LINE characters too
    if whole:
        line = _text(data[ls:le])
    else:
        cut = min(le, ls + 4 * MAX_LINE + 4)  # room for MAX_LINE characters of up to 4 bytes
        while cut < le and data[cut] & 0xC0 == 0x80:  # not inside a character
            cut -= 1
        line = _text(data[ls:cut])[:MAX_LINE]
    if line[:1] in "0123456789#[s\ufeff":
        m = _CI_PREFIX.match(line)
        if m:
            return line[m.end() :], False
    return line, whole


def around(data: bytes, ls: int, le: int, no: int, tail: Iterable[Numbered]) -> tuple[list[Numbered], list[Numbered]]:
    """The lines before line ``no`` (``data[ls:le]``; from ``tail``, the end of the previous
    block, where the block starts too soon) and the lines after it in the block."""
    before: list[Numbered] = []
    p = ls
    k = 0
    while k < CONTEXT_BEFORE and p > 0:
        q = data.rfind(b"\n", 0, p - 1) + 1
        before.append((no - k - 1, _text(data[q : p - 1])))
        p = q
        k += 1
    if k < CONTEXT_BEFORE:
        for item in reversed(list(tail)):
            if k >= CONTEXT_BEFORE:
                break
            if item[0] < no - k:
                before.append(item)
                k += 1
    before.reverse()
    after: list[Numbered] = []
    p = le
    while len(after) < CONTEXT_AFTER and p < len(data):
        q = data.find(b"\n", p + 1)
        if q < 0:
            q = len(data)
        after.append((no + len(after) + 1, _text(data[p + 1 : q])))
        p = q
    return before, after
