"""Every labelled real log in the development part of the corpus is diagnosed right: the
category and the root-cause line must both match the label. (The public sample, the logs of
tests/corpus/local and the development part of tests/corpus/own; the held-out part of
tests/corpus/own is only scored, by bench/diagnose_accuracy.py.)"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from builder.diagnosis import diagnose_file, load_rules

CORPUS = Path(__file__).resolve().parent / "corpus"


def _labels(split: str | None = "dev") -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for sub in ("public", "local", "own"):
        labels = CORPUS / sub / "labels.json"
        for entry in json.loads(labels.read_text("utf-8")):
            if split is None or entry.get("split", "dev") == split:
                out.append((CORPUS / sub / entry["file"], entry))
    return out


LABELS = _labels()


def test_corpus_is_there() -> None:
    every = _labels(None)
    assert len([p for p, _ in every if "public" in p.parts]) == 36
    assert len([p for p, _ in every if "local" in p.parts]) >= 10
    own = [label for p, label in every if "own" in p.parts]
    assert len(own) >= 200
    for path, _ in every:
        assert path.is_file(), path
    # split once, stratified: every category with a held-out log has development logs too
    held = Counter(label["category"] for label in own if label["split"] == "held-out")
    dev = Counter(label["category"] for label in own if label["split"] == "dev")
    assert held and all(dev[c] for c in held)


@pytest.mark.parametrize(("path", "label"), LABELS, ids=[f"{p.parent.name}/{p.name}" for p, _ in LABELS])
def test_corpus_log(path: Path, label: dict[str, Any]) -> None:
    d = diagnose_file(path)
    lines = path.read_text("utf-8", errors="replace").split("\n")
    assert d.primary.line > 0, f"nothing found in {path.name}"
    got = lines[d.primary.line - 1].rstrip("\r").rstrip()
    assert (d.primary.category, got) == (label["category"], label["root_cause_line"].rstrip()), (
        f"{path.name}: rule {d.primary.rule}"
    )
    assert d.to_dict()["primary"]["line"] == d.primary.line


# Every rule has a real log in the development part (the sandbox's markers and the proof step:
# own-701 to own-707; Cython 3.1's missing Python 2 names, a full TMPDIR, a missing
# libpythonX.Y.so: own-801 to own-803; an old meson or CMake, numpy's headers missing, javac
# missing, a symbol defined twice, a generic compile error: own-901 to own-906; a CI service's time limit: own-951 to
# own-953). A new rule without one is listed here until it has, with a realistic snippet in
# test_diagnosis_rules.py.
NO_REAL_LOG_YET: frozenset[str] = frozenset()


@pytest.fixture(scope="module")
def logs_by_primary_rule() -> dict[str, list[str]]:
    """rule id -> the development logs whose primary cause it gives (test_corpus_log asserts
    that each of those is the labelled category and line)."""
    out: dict[str, list[str]] = defaultdict(list)
    for path, _ in LABELS:
        out[diagnose_file(path).primary.rule].append(f"{path.parent.name}/{path.name}")
    return out


def test_every_rule_has_a_real_log(logs_by_primary_rule: dict[str, list[str]]) -> None:
    rules = {r.id for r in load_rules().rules}
    assert rules >= NO_REAL_LOG_YET, f"not rules: {sorted(NO_REAL_LOG_YET - rules)}"
    missing = sorted(rules - set(logs_by_primary_rule) - NO_REAL_LOG_YET)
    assert not missing, f"rules that no labelled real log in the development part shows: {missing}"
    found = {r: logs_by_primary_rule[r][0] for r in sorted(NO_REAL_LOG_YET & set(logs_by_primary_rule))}
    assert not found, f"these rules have a real log now; take them off NO_REAL_LOG_YET: {found}"
