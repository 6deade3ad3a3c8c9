"""Accuracy of the rule set on the labelled corpus: the part the rules are written against
(development: tests/corpus/public, tests/corpus/local and the development part of
tests/corpus/own) beside the held-out part of tests/corpus/own, which is only ever scored.

Prints, side by side for both parts: category accuracy and root-cause-line accuracy (the line
at ``primary.line`` equals the label's ``root_cause_line``) overall and per category with the
count of logs, then every miss. Target on the held-out part: >= 97% category, >= 93% line.

    python bench/diagnose_accuracy.py
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from builder.diagnosis import RULESET_VERSION, diagnose_file  # noqa: E402

CORPUS = ROOT / "tests" / "corpus"
PARTS = ("dev", "held-out")


def labelled() -> list[tuple[str, Path, dict[str, Any]]]:
    """(part, log, label) for every labelled log."""
    out = []
    for sub in ("public", "local", "own"):
        d = CORPUS / sub
        for label in json.loads((d / "labels.json").read_text("utf-8")):
            if label.get("split", "dev") in PARTS:  # "excluded": see the label's reason
                out.append((label.get("split", "dev"), d / label["file"], label))
    return out


def score(path: Path, label: dict[str, Any]) -> tuple[bool, bool, str]:
    diag = diagnose_file(path)
    lines = path.read_text("utf-8", errors="replace").split("\n")
    got = lines[diag.primary.line - 1].rstrip() if diag.primary.line else ""
    cat_ok = diag.primary.category == label["category"]
    line_ok = got == label["root_cause_line"].rstrip()
    return cat_ok, line_ok, f"got {diag.primary.category} [{diag.primary.rule}] line {diag.primary.line}"


def main() -> int:
    # (part, category) -> [logs, category right, line right]
    table: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    misses: list[str] = []
    for part, path, label in labelled():
        cat_ok, line_ok, got = score(path, label)
        for key in ((part, label["category"]), (part, "ALL")):
            row = table[key]
            row[0] += 1
            row[1] += cat_ok
            row[2] += line_ok
        if not (cat_ok and line_ok):
            misses.append(f"  [{part}] {path.parent.name}/{path.name}: want {label['category']} {got}")
    categories = sorted({c for _, c in table if c != "ALL"}) + ["ALL"]
    head = f"{'category':26}" + "".join(f"| {p:^27} " for p in PARTS)
    print(head)
    print(f"{'':26}" + "| logs  category   line     " * len(PARTS))
    for cat in categories:
        cells = []
        for part in PARTS:
            n, c, ln = table.get((part, cat), [0, 0, 0])
            cells.append(f"| {n:4}  {_pct(c, n):>7}  {_pct(ln, n):>7}    " if n else f"| {'-':>4}  {'':7}  {'':7}    ")
        print(f"{cat:26}" + "".join(cells))
    print(f"rule set {RULESET_VERSION}; target on held-out: category >= 97%, line >= 93%")
    if misses:
        print("misses:")
        print("\n".join(misses))
    return 0


def _pct(k: int, n: int) -> str:
    return f"{100 * k / n:.1f}%"


if __name__ == "__main__":
    sys.exit(main())
