"""Reading a build log: any encoding, in blocks of whole lines, with terminal colour removed.

Logs arrive as pip wrote them to a terminal or a file, as PowerShell's ``>`` wrote them
(UTF-16, with or without a byte-order mark), with a UTF-8 BOM, in Latin-1, with CRLF line ends
or with NUL bytes. Every block handed on is ``str`` with ``\\n`` line ends, no NULs and no ANSI
escape sequences; line numbers are those of the input (only ``\\n`` ends a line).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Iterator
from typing import BinaryIO

BLOCK_LINES = 8192
READ_SIZE = 1 << 20
MAX_CARRY = 1 << 20  # longest line kept while reading; the rest of that line is skipped

_ANSI = re.compile(r"\x1b(?:\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b\n]*(?:\x07|\x1b\\)?|[@-Z\\-_])")


def _latin1_fallback(exc: UnicodeError) -> tuple[str, int]:
    """A byte that is not UTF-8 is read as Latin-1: a log mixing both keeps every character."""
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    return exc.object[exc.start : exc.end].decode("latin-1"), exc.end


codecs.register_error("wheelyard-latin1", _latin1_fallback)


def sniff_encoding(head: bytes) -> tuple[str, int]:
    """(codec, bytes of byte-order mark to skip) for a log that starts with ``head``."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8", 3
    if head.startswith(codecs.BOM_UTF16_LE):
        return "utf-16-le", 2
    if head.startswith(codecs.BOM_UTF16_BE):
        return "utf-16-be", 2
    sample = head[:4096]
    if len(sample) >= 4:
        even = sample[0::2].count(0)
        odd = sample[1::2].count(0)
        half = len(sample) // 2
        # ASCII text in UTF-16 has a NUL in every other byte
        if odd > 0.4 * half and even < 0.05 * half:
            return "utf-16-le", 0
        if even > 0.4 * half and odd < 0.05 * half:
            return "utf-16-be", 0
    return "utf-8", 0


def clean(text: str) -> str:
    """``\\n`` line ends only, no NUL bytes, no terminal escape sequences."""
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    if "\x00" in text:
        text = text.replace("\x00", "")
    if "\x1b" in text:
        text = _ANSI.sub("", text)
    return text


def blocks_from_lines(lines: Iterable[str]) -> Iterator[str]:
    batch: list[str] = []
    size = 0
    for item in lines:
        batch.append(item[:-1] if item.endswith("\n") else item)
        size += len(item)
        if len(batch) >= BLOCK_LINES or size >= READ_SIZE:
            yield clean("\n".join(batch))
            batch = []
            size = 0
    if batch:
        yield clean("\n".join(batch))


def blocks_from_binary(fh: BinaryIO) -> Iterator[str]:
    head = fh.read(READ_SIZE)
    codec, skip = sniff_encoding(head)
    errors = "wheelyard-latin1" if codec == "utf-8" else "replace"
    decoder = codecs.getincrementaldecoder(codec)(errors)
    chunk = head[skip:]
    carry = ""
    skipping = False
    while chunk:
        text = decoder.decode(chunk)
        chunk = fh.read(READ_SIZE)
        if skipping:
            nl = text.find("\n")
            if nl < 0:
                continue
            text = text[nl:]  # keep the newline: it ends the truncated line
            skipping = False
        data = carry + text
        cut = data.rfind("\n")
        if cut < 0:
            carry = data[:MAX_CARRY]
            skipping = len(data) > MAX_CARRY
            continue
        carry = data[cut + 1 :]
        if len(carry) > MAX_CARRY:
            carry, skipping = carry[:MAX_CARRY], True
        yield clean(data[:cut])
    carry += decoder.decode(b"", final=True)
    if carry:
        yield clean(carry)


def blocks_from_text(read: Iterable[str]) -> Iterator[str]:
    """Blocks of whole lines from chunks of text of any size (a text stream read in pieces)."""
    carry = ""
    for chunk in read:
        data = carry + chunk
        cut = data.rfind("\n")
        if cut < 0:
            carry = data
            continue
        carry = data[cut + 1 :]
        yield clean(data[:cut])
    if carry:
        yield clean(carry)
