"""Accuracy of the rule set on the labelled corpus (public sample + local logs).

Prints, per corpus and overall: category accuracy, root-cause-line accuracy (the line at
``primary.line`` equals the label's ``root_cause_line``), both together, and the OS family
guess against the label's platform where the label gives one. Lists every miss.

    python bench/diagnose_accuracy.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from builder.diagnosis import RULESET_VERSION, diagnose_file  # noqa: E402


def main() -> int:
    totals = {"n": 0, "cat": 0, "line": 0, "both": 0, "os_n": 0, "os": 0}
    misses: list[str] = []
    for sub in ("public", "local"):
        d = ROOT / "tests" / "corpus" / sub
        stats = {"n": 0, "cat": 0, "line": 0, "both": 0, "os_n": 0, "os": 0}
        for label in json.loads((d / "labels.json").read_text("utf-8")):
            path = d / label["file"]
            diag = diagnose_file(path)
            lines = path.read_text("utf-8", errors="replace").splitlines()
            got = lines[diag.primary.line - 1].rstrip() if diag.primary.line else ""
            cat_ok = diag.primary.category == label["category"]
            line_ok = got == label["root_cause_line"].rstrip()
            stats["n"] += 1
            stats["cat"] += cat_ok
            stats["line"] += line_ok
            stats["both"] += cat_ok and line_ok
            if label.get("platform") in ("linux", "macos", "windows"):
                stats["os_n"] += 1
                stats["os"] += diag.os == label["platform"] or (diag.os == "unknown" and label["platform"] == "linux")
            if not (cat_ok and line_ok):
                misses.append(
                    f"  {sub}/{label['file']}: want {label['category']} got "
                    f"{diag.primary.category} [{diag.primary.rule}] line {diag.primary.line}"
                )
        for k in totals:
            totals[k] += stats[k]
        _print(sub, stats)
    _print("all", totals)
    print(f"rule set {RULESET_VERSION}")
    if misses:
        print("misses:")
        print("\n".join(misses))
    return 0


def _print(name: str, s: dict[str, int]) -> None:
    n = max(s["n"], 1)
    os_n = max(s["os_n"], 1)
    print(
        f"{name:7} logs={s['n']:3}  category={100 * s['cat'] / n:5.1f}%  "
        f"root-line={100 * s['line'] / n:5.1f}%  both={100 * s['both'] / n:5.1f}%  "
        f"os(linux if unsure)={100 * s['os'] / os_n:5.1f}%"
    )


if __name__ == "__main__":
    sys.exit(main())
