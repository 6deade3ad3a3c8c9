"""The keyword pass that sends the engine to the lines worth a look: the native automaton and
the regex used where it cannot be installed find the same occurrences and so give the same
diagnoses; a line's keywords are those of the part the rules see; what a pattern's matches must
hold is read exactly, so skipping the lines without it changes no diagnosis."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from builder.diagnosis import compiled, diagnose, diagnose_file, keywords, load_rules
from builder.diagnosis.keywords import KeywordFinder, required_factors, required_literal
from builder.diagnosis.lines import MAX_LINE

CORPUS = Path(__file__).resolve().parent / "corpus"
WORDS = frozenset({"rror", "error:", "No module", "No module named", "odule", "fatal error", "é:"})
TEXT = (
    "  src/é.c:1:10: fatal error: ffi.h: No such file or directory\n"
    "ModuleNotFoundError: No module named 'cgi'\n"
    "nothing here\n"
    "café: error: ERROR\n"
)


def _found(native: bool) -> list[tuple[str, int]]:
    f = KeywordFinder(WORDS, native=native)
    data = TEXT.encode()
    return sorted((f.words[i], s) for i, s, e in f.find(data) if data[s:e].decode() == f.words[i])


@pytest.mark.skipif(not keywords.NATIVE, reason="ahocorasick_rs is not installed")
def test_native_and_regex_finders_find_the_same() -> None:
    assert _found(native=True) == _found(native=False)


@pytest.mark.parametrize("native", [True, False], ids=["native", "regex"])
def test_every_occurrence_in_bytes_overlapping_ones_too(native: bool) -> None:
    if native and not keywords.NATIVE:
        pytest.skip("ahocorasick_rs is not installed")
    data = TEXT.encode()
    got = _found(native)
    # byte offsets: "é" is two bytes
    assert ("fatal error", data.index(b"fatal error")) in got
    assert ("rror", data.index(b"rror")) in got
    assert ("No module", data.index(b"No module")) in got
    assert ("No module named", data.index(b"No module")) in got
    assert ("odule", data.index(b"oduleNotFound")) in got
    assert ("é:", data.index("é:".encode())) in got
    assert [w for w, _ in got].count("rror") == 3  # ERROR is not "rror"
    f = KeywordFinder(WORDS, native=native)
    start = data.index(b"nothing")
    assert sorted(s for _, s, _ in f.find(data, start)) == sorted(s for w, s in got if s >= start)


def _diagnoses(paths: list[Path]) -> list[dict[str, object]]:
    return [diagnose_file(p).to_dict() for p in paths]


@pytest.mark.skipif(not keywords.NATIVE, reason="ahocorasick_rs is not installed")
def test_corpus_diagnoses_are_the_same_without_the_native_finder(monkeypatch: pytest.MonkeyPatch) -> None:
    paths = []
    for sub in ("public", "local", "own"):
        paths += [CORPUS / sub / e["file"] for e in json.loads((CORPUS / sub / "labels.json").read_text("utf-8"))]
    native = _diagnoses(paths)
    monkeypatch.setattr(keywords, "NATIVE", False)
    assert _diagnoses(paths) == native


def test_keywords_past_max_line_or_in_a_ci_prefix_do_not_count() -> None:
    header = "  a.c:1:10: fatal error: ffi.h: No such file or directory"
    # the rules see the first MAX_LINE characters: the error at the end of a longer line is not one
    long_line = "é" * MAX_LINE + header
    d = diagnose([long_line, "next"])
    assert d.primary.category != "missing-library-header"
    # fewer characters than MAX_LINE (but more bytes): the whole line is seen
    d = diagnose(["é" * (MAX_LINE - len(header) - 1) + header])
    assert (d.primary.category, d.primary.line) == ("missing-library-header", 1)
    # "error" in the CI prefix alone does not make the line an error
    d = diagnose(["##[error]Process completed with exit code 1.", "done"])
    assert (d.primary.category, d.primary.line) == ("unknown", 0)
    d = diagnose(["##[error]error: Process completed with exit code 1.", "done"])
    assert (d.primary.line, d.primary.text) == (1, "error: Process completed with exit code 1.")


def test_success_line_is_seen_by_its_own_keyword() -> None:
    # the context sees only lines that hold one of its keywords: each success form needs one
    for last in ("Successfully created wheel for foo", "Successfully built foo", "Saved ./foo-1.0-py3-none-any.whl"):
        d = diagnose(["  warning: optional speedups not built", last])
        assert not d.failed, last
        assert (d.primary.category, d.primary.line) == ("no-failure", 2)


def test_required_literal_and_factors_of_a_pattern() -> None:
    stdlib = re.compile(r"No module named '?(?P<module>cgi|imp)(?:\.\w+)?'?\s*$")
    assert required_literal(stdlib) == "No module named "
    assert required_factors(stdlib) == {
        "No module named cgi",
        "No module named imp",
        "No module named 'cgi",
        "No module named 'imp",
    }
    header = re.compile(r"fatal error[^:]*: ['‘\"]?(?P<header>[\w./+-]+\.h)")
    assert required_factors(header) == {"fatal error"}
    # nothing every match must hold: a top-level alternation of open forms, or case-insensitive
    assert required_factors(re.compile(r"\w+ not found|cannot \w+")) == frozenset()
    assert required_literal(re.compile(r"(?i)no module named")) == ""
    assert required_factors(re.compile(r"(?i)no module named")) == frozenset()


def test_factors_change_no_diagnosis(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lines holding none of a rule's factors are not tried against it: the corpus is diagnosed
    exactly as when every line with a keyword is tried."""
    paths = []
    for sub in ("public", "local", "own"):
        paths += [CORPUS / sub / e["file"] for e in json.loads((CORPUS / sub / "labels.json").read_text("utf-8"))]
    with_factors = _diagnoses(paths)
    monkeypatch.setattr(compiled, "MIN_FACTOR", 10**6)
    monkeypatch.setattr(compiled, "_COMPILED", {})
    assert all(f is None for f in compiled.compiled(load_rules()).factors)
    assert _diagnoses(paths) == with_factors
