"""The ``diagnose`` command through ``main([...])`` with in-memory streams."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from builder.diagnosis import RULESET_VERSION
from builder.diagnosis.cli import main

CORPUS = Path(__file__).resolve().parent / "corpus"
LOG = CORPUS / "public" / "public-031.log"


class _TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(argv: list[str], stdin: io.IOBase | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = main(argv, stdin=stdin, stdout=out, stderr=err)  # type: ignore[arg-type]
    return rc, out.getvalue(), err.getvalue()


def test_json_schema() -> None:
    rc, out, err = run([str(LOG), "--json"])
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["schema_version"] == 1
    assert doc["ruleset_version"] == RULESET_VERSION
    assert doc["diagnosed"] is True
    p = doc["primary"]
    for key in (
        "category",
        "rule",
        "line",
        "detail",
        "excerpt",
        "explanation",
        "remedies",
        "capability",
        "text",
        "excerpt_start",
    ):
        assert key in p
    assert p["category"] == "missing-library-header"
    assert p["rule"] == "header-missing"
    lines = LOG.read_text().splitlines()
    assert lines[p["line"] - 1] == p["text"]
    assert p["remedies"][0] == {
        "platform": "debian",
        "text": "sudo apt-get install portaudio19-dev",
    }
    assert p["capability"] == "lib:portaudio"
    assert doc["causes"][0] == p
    for key in ("package", "version", "platform", "advice", "os", "python", "lines"):
        assert key in doc
    assert doc["package"] == "pyaudio" and doc["version"] == "0.2.11"
    assert doc["advice"][-1].startswith("Re-run to confirm: python -m pip install --no-cache-dir -v")


def test_human_output_no_color_when_not_tty() -> None:
    rc, out, _ = run([str(LOG)])
    assert rc == 0
    assert "\033[" not in out
    assert "portaudio.h" in out
    assert "sudo apt-get install portaudio19-dev" in out.split("Elsewhere")[0]


def test_human_output_color_on_tty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    out = _TTY()
    assert main([str(LOG)], stdout=out, stderr=io.StringIO()) == 0
    assert "\033[" in out.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    out = _TTY()
    main([str(LOG)], stdout=out, stderr=io.StringIO())
    assert "\033[" not in out.getvalue()


def test_platform_option_puts_that_fix_first() -> None:
    rc, out, _ = run([str(LOG), "--json", "--platform", "alpine"])
    doc = json.loads(out)
    assert doc["platform"] == "alpine" and doc["platform_source"] == "option"
    assert doc["primary"]["remedies"][0]["text"] == "apk add portaudio-dev"


def test_stdin_text_and_binary() -> None:
    text = LOG.read_text()
    rc, out, _ = run(["-", "--json"], stdin=io.StringIO(text))
    assert rc == 0 and json.loads(out)["primary"]["rule"] == "header-missing"
    rc, out, _ = run(["-", "--json"], stdin=io.BytesIO(text.encode()))
    assert rc == 0 and json.loads(out)["primary"]["line"] == 17


def test_unknown_exit_1_with_excerpt() -> None:
    rc, out, _ = run(["-"], stdin=io.StringIO("ok\n  RuntimeError: flux capacitor\nbye\n"))
    assert rc == 1
    assert "flux capacitor" in out
    rc, out, _ = run(["-", "--json"], stdin=io.StringIO("all good\n"))
    assert rc == 1
    assert json.loads(out)["primary"]["category"] == "unknown"


def test_bad_input_exit_2(tmp_path: Path) -> None:
    rc, out, err = run([str(tmp_path / "nope.log")])
    assert rc == 2 and "no such file" in err and "Traceback" not in err
    rc, _, err = run([str(tmp_path)])
    assert rc == 2 and "directory" in err
    rc, _, err = run([])
    assert rc == 2 and "usage" in err
    rc, _, err = run([str(LOG), "--platform", "beos"])
    assert rc == 2


def test_non_utf8_input(tmp_path: Path) -> None:
    p = tmp_path / "latin1.log"
    p.write_bytes(b"caf\xe9\n  a.c:1:10: fatal error: ffi.h: No such file or directory\n")
    rc, out, _ = run([str(p), "--json"])
    assert rc == 0 and json.loads(out)["primary"]["line"] == 2
