"""What the diagnosis reads: any encoding and CI decoration, and logs that are not failures."""

from __future__ import annotations

import codecs
import io
from pathlib import Path

import pytest

from builder.diagnosis import diagnose, diagnose_file, diagnose_stream
from builder.diagnosis.cli import main
from builder.diagnosis.render import render_text

LOG = [
    "Building wheel for café (pyproject.toml): started",
    "  gcc -c src/café.c -o build/café.o",
    "  src/café.c:1:10: fatal error: ffi.h: No such file or directory",
    "  compilation terminated.",
    "  error: command '/usr/bin/gcc' failed with exit code 1",
]


@pytest.mark.parametrize(
    "encode",
    [
        lambda t: codecs.BOM_UTF16_LE + t.encode("utf-16-le"),  # PowerShell's ">"
        lambda t: t.encode("utf-16-le"),
        lambda t: codecs.BOM_UTF16_BE + t.encode("utf-16-be"),
        lambda t: t.encode("utf-16-be"),
        lambda t: codecs.BOM_UTF8 + t.encode("utf-8"),
        lambda t: t.encode("latin-1"),
        lambda t: t.replace("\n", "\r\n").encode("utf-8"),
        lambda t: t.replace("gcc -c", "gcc\x00 -c").encode("utf-8"),
    ],
    ids=["utf16le-bom", "utf16le", "utf16be-bom", "utf16be", "utf8-bom", "latin1", "crlf", "nul"],
)
def test_any_encoding(tmp_path: Path, encode: object) -> None:
    data = encode("\n".join(LOG) + "\n")  # type: ignore[operator]
    path = tmp_path / "build.log"
    path.write_bytes(data)
    d = diagnose_file(path)
    assert (d.primary.category, d.primary.line) == ("missing-library-header", 3)
    assert d.primary.text == LOG[2]
    assert d.package == "café"


def test_mixed_utf8_and_latin1_keeps_every_line() -> None:
    data = ("\n".join(LOG[:2]) + "\n").encode("utf-8") + b"  caf\xe9 \xff\n" + "\n".join(LOG[2:]).encode()
    d = diagnose_stream(io.BytesIO(data))
    assert (d.primary.category, d.primary.line) == ("missing-library-header", 4)


def test_ci_prefixes_and_colour() -> None:
    lines = [f"2024-05-01T10:00:0{i}.1234567Z \x1b[36m{line}\x1b[0m" for i, line in enumerate(LOG)]
    d = diagnose(lines)
    assert (d.primary.category, d.primary.line) == ("missing-library-header", 3)
    assert d.primary.text == LOG[2]


SUCCESS = [
    "Building wheel for markupsafe (setup.py): started",
    "  building 'markupsafe._speedups' extension",
    "  error: command 'gcc' failed: No such file or directory",
    "  WARNING: The C extension could not be compiled, speedups are not enabled.",
    "  Building wheel for markupsafe (setup.py): finished with status 'done'",
    "Successfully built markupsafe",
]


def test_success_is_no_failure_with_notes() -> None:
    d = diagnose(SUCCESS)
    assert not d.failed
    assert d.primary.category == "no-failure" and d.primary.line == 6
    assert not d.causes
    assert [n.category for n in d.notes] == ["missing-c-compiler"]
    doc = d.to_dict()
    assert doc["failed"] is False and doc["notes"][0]["line"] == 3
    text = render_text(d)
    assert "did not fail" in text and "note: line 3" in text


def test_failure_after_success_is_a_failure() -> None:
    log = [
        *SUCCESS,
        "ERROR: Could not build wheels for other, which is required to install pyproject.toml-based projects",
    ]
    d = diagnose(log)
    assert d.failed and d.primary.category == "missing-c-compiler"


def test_build_environment_success_is_not_the_end() -> None:
    log = [
        "  Installing build dependencies: started",
        "  Successfully installed setuptools-69.0.0 wheel-0.42.0",
        "  src/a.c:1:10: fatal error: ffi.h: No such file or directory",
    ]
    assert diagnose(log).failed


def test_cli_exit_code_for_no_failure(tmp_path: Path) -> None:
    path = tmp_path / "ok.log"
    path.write_text("\n".join(SUCCESS) + "\n")
    out, err = io.StringIO(), io.StringIO()
    assert main([str(path)], stdout=out, stderr=err) == 3
    assert "did not fail" in out.getvalue()


def test_report_without_package_name() -> None:
    d = diagnose(["  src/a.c:1:10: fatal error: ffi.h: No such file or directory"])
    assert d.package is None
    first = render_text(d).splitlines()[0]
    assert first.startswith("Build failed: missing-library-header")
    assert "Build of" not in render_text(diagnose(["nothing to see"]))


def test_distinct_error_lines_keep_the_cap_and_the_first() -> None:
    log = [f"  src/f{i}.c:{i}:1: error: unknown thing number {i}" for i in range(20_000)]
    d = diagnose(log)
    assert len(d.causes) == 50
    assert d.primary.line == 1
    assert [c.line for c in d.causes] == list(range(1, 51))


def test_hollow_wheel_is_diagnosed_by_the_compile_error_that_made_it() -> None:
    # builder/pipeline.py's log: the optional extension failed, the build went on in pure Python,
    # and the platform-tagged wheel without a compiled module was refused.
    log = [
        "==> build",
        "Installed 2 packages in 4ms",
        "building 'fastx._speedups' extension",
        "gcc -pthread -fPIC -I/usr/include/python3.12 -c src/_speedups.c -o build/_speedups.o",
        "src/_speedups.c:3:10: fatal error: zstd.h: No such file or directory",
        "compilation terminated.",
        "WARNING: the C extension could not be built; falling back to pure Python",
        "wheelyard: built fastx-1.0-cp312-cp312-linux_x86_64.whl",
        "==> repair",
        "wheelyard: build failed: fastx-1.0-cp312-cp312-linux_x86_64.whl is tagged for a platform but holds no "
        "compiled module: the extension did not compile and the build fell back to pure Python",
    ]
    d = diagnose(log)
    assert d.failed
    assert (d.primary.category, d.primary.line) == ("missing-library-header", 5)
    alone = diagnose([line for line in log if "zstd.h" not in line])
    assert alone.failed and alone.primary.line == len(log) - 1
    assert alone.primary.text.startswith("wheelyard: build failed:")


def test_proof_import_failure_is_not_a_missing_build_dependency() -> None:
    log = [
        "==> prove",
        "wheelyard: proof: importing tinypkg",
        "Traceback (most recent call last):",
        "ModuleNotFoundError: No module named 'tinypkg._native'",
        "wheelyard: proof: import failed: tinypkg: ModuleNotFoundError: No module named 'tinypkg._native'",
    ]
    d = diagnose(log)
    assert (d.primary.category, d.primary.rule, d.primary.line) == ("import-failed", "import-failed", 4)
    assert "tinypkg._native" in d.primary.detail
    before = diagnose(["==> build", *log[2:4]])
    assert before.primary.category == "missing-build-dependency"


@pytest.mark.parametrize(
    "line",
    [
        "2024-05-01T10:00:00.1234567Z Exception: the build script gave up",
        "  ../src/meson.build:12:4: ERROR: Problem encountered: unsupported platform",
        "Exception: no version file",
        "  setuptools.errors.PlatformError: unsupported platform",
        "  distutils.errors.DistutilsExecError: command failed",
        "    | ExceptionGroup: unhandled errors in a TaskGroup (1 sub-exception)",
        "  SystemExit: 2",
    ],
)
def test_fallback_points_at_the_error(line: str) -> None:
    d = diagnose(["running build", "  copying a.py", line, "  done"])
    assert d.primary.category == "unknown"
    assert d.primary.line == 3
