"""Every labelled real log (public sample + logs made on this machine) is diagnosed right:
the category and the root-cause line must both match the label."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from builder.diagnosis import diagnose_file

CORPUS = Path(__file__).resolve().parent / "corpus"


def _labels() -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for sub in ("public", "local"):
        labels = CORPUS / sub / "labels.json"
        for entry in json.loads(labels.read_text("utf-8")):
            out.append((CORPUS / sub / entry["file"], entry))
    return out


LABELS = _labels()


def test_corpus_is_there() -> None:
    assert len([p for p, _ in LABELS if "public" in p.parts]) == 36
    assert len([p for p, _ in LABELS if "local" in p.parts]) >= 10
    for path, _ in LABELS:
        assert path.is_file(), path


@pytest.mark.parametrize(("path", "label"), LABELS, ids=[p.name for p, _ in LABELS])
def test_corpus_log(path: Path, label: dict[str, Any]) -> None:
    d = diagnose_file(path)
    lines = path.read_text("utf-8", errors="replace").splitlines()
    assert d.primary.line > 0, f"nothing found in {path.name}"
    got = lines[d.primary.line - 1].rstrip("\r").rstrip()
    assert (d.primary.category, got) == (label["category"], label["root_cause_line"].rstrip()), (
        f"{path.name}: rule {d.primary.rule}"
    )
    # the cause's own text is the line at that number
    assert d.primary.text.rstrip() == got[: len(d.primary.text.rstrip())]
    assert d.to_dict()["primary"]["line"] == d.primary.line
