"""Output of a :class:`Diagnosis`: for people (optionally coloured) and as JSON."""

from __future__ import annotations

import json
import os
from typing import TextIO

from .engine import Cause, Diagnosis

_CODES = {"bold": "1", "red": "31", "green": "32", "yellow": "33", "cyan": "36", "dim": "2"}


def use_color(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (non-empty)."""
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class _Paint:
    def __init__(self, on: bool) -> None:
        self.on = on

    def __call__(self, text: str, *styles: str) -> str:
        if not self.on or not styles:
            return text
        codes = ";".join(_CODES[s] for s in styles)
        return f"\033[{codes}m{text}\033[0m"


def render_text(d: Diagnosis, *, color: bool = False) -> str:
    """A human report: cause, the quoted line, the fix for the log's platform first."""
    c = _Paint(color)
    p = d.primary
    out: list[str] = []
    what = "Build"
    if d.package:
        what = f"Build of {d.package} {d.version}" if d.version else f"Build of {d.package}"
    if not d.failed:
        out.append(c(f"{what} did not fail", "bold", "green"))
        out.append(p.explanation)
        for note in d.notes[:10]:
            out.append(f"  note: line {note.line}: {note.category} [{note.rule}] {note.detail} (did not stop it)")
    elif d.diagnosed:
        out.append(c(f"{what} failed: {p.category}", "bold", "red") + c(f"  [{p.rule}]", "dim"))
        if p.detail:
            out.append(f"  {p.detail}")
        out.append("")
        out.append(p.explanation)
    else:
        out.append(c(f"{what} failed: cause not recognised", "bold", "yellow"))
        out.append(p.explanation)
    if p.line:
        out.append("")
        out.append(c(f"Line {p.line}:", "bold"))
        out.extend(_excerpt(p, c))
    if p.remedies:
        out.append("")
        first, *rest = p.remedies
        how = {"log": "detected from the log", "host": "this machine", "option": "as asked"}
        label = first.platform
        if first.platform == d.platform:
            label = f"{first.platform}, {how.get(d.platform_source, d.platform_source)}"
        out.append(c(f"Fix ({label}):", "bold", "green"))
        out.append(f"  {first.text}")
        if rest:
            out.append(c("Elsewhere:", "bold"))
            for r in rest:
                out.append(f"  {r.platform:8} {r.text}")
    if p.capability:
        out.append(c("Worker capability: ", "dim") + p.capability)
    others = [x for x in d.causes[1:]]
    if others:
        out.append("")
        out.append(c("Also in the log:", "bold"))
        for x in others[:10]:
            out.append(f"  line {x.line}: {x.category} [{x.rule}] {x.detail}")
        if len(others) > 10:
            out.append(f"  ... and {len(others) - 10} more")
    if d.advice:
        out.append("")
        for a in d.advice:
            out.append(c("* ", "cyan") + a)
    return "\n".join(out) + "\n"


def _excerpt(p: Cause, c: _Paint) -> list[str]:
    rows = p.excerpt.split("\n") if p.excerpt else [p.text]
    width = len(str(p.excerpt_start + len(rows)))
    out = []
    for i, text in enumerate(rows):
        no = p.excerpt_start + i
        if no == p.line:
            out.append(c(f"> {no:>{width}} | {text}", "bold", "red"))
        else:
            out.append(c(f"  {no:>{width}} | {text}", "dim"))
    return out


def render_json(d: Diagnosis) -> str:
    """The JSON document described in docs/diagnosis.md (schema_version 1)."""
    return json.dumps(d.to_dict(), indent=2, ensure_ascii=False) + "\n"
