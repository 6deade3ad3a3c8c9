"""Every labelled real log in the development part of the corpus is diagnosed right: the
category and the root-cause line must both match the label. (The public sample, the logs of
tests/corpus/local and the development part of tests/corpus/own; the held-out part of
tests/corpus/own is only scored, by bench/diagnose_accuracy.py.)"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from builder.diagnosis import diagnose_file

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
