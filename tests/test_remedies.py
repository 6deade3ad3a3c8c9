# ruff: noqa: E501  (tables of file contents)
"""Remedies as data: the shipped file is valid and every rule's remedy exists; bad files are refused
with the field named; each kind of remedy does what it says, on real files and real tools."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from builder.applying import RemedyNotApplicable, forced_includes, install_options, prepare, regenerate
from builder.build_changes import BuildChanges
from builder.cython_output import generated_sources
from builder.diagnosis.rules import load_rules
from builder.remedies import KINDS, RemedySetError, load_remedies, next_remedy, parse_remedies
from builder.setup_requires import declared_setup_requires
from builder.upstream import DistFile

SDIST = DistFile(
    "demo-1.0.tar.gz", "https://example.invalid/demo-1.0.tar.gz", "0" * 64, upload_time="2023-03-08T17:50:48.564091Z"
)


def lines() -> tuple[list[str], Any]:
    said: list[str] = []
    return said, said.append


def test_the_shipped_remedies_cover_every_kind_and_every_rule_names_one_that_exists() -> None:
    remedies = load_remedies().remedies
    assert {r.kind for r in remedies.values()} == set(KINDS)
    named = {name for rule in load_rules().rules for name in rule.retry}
    assert named and named <= set(remedies)
    assert load_rules().rule("py-capi-removed").retry == ("regenerate-cython", "regenerate-cython-py313-compat")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            'schema = 1\n[[remedy]]\nname = "x"\nkind = "constraint"\nsummary = "s"\nconstraint = ["a<2"]\n',
            "'constraints'",
        ),
        ('schema = 1\n[[remedy]]\nname = "x"\nkind = "constrain"\nsummary = "s"\n', "did you mean 'constraint'"),
        ('schema = 1\n[[remedy]]\nname = "x"\nkind = "constraint"\nsummary = "s"\n', "needs 'constraints'"),
        (
            'schema = 1\n[[remedy]]\nname = "x"\nkind = "constraint"\nsummary = "s"\nconstraints = ["a <<< 2"]\n',
            "PEP 508",
        ),
        (
            'schema = 1\n[[remedy]]\nname = "x"\nkind = "environment"\nsummary = "s"\nenvironment = {"A-B" = "1"}\n',
            "NAME",
        ),
        ('schema = 1\n[[remedy]]\nname = "x"\nkind = "setup-requires"\nsummary = "s"\ncython = "cython"\n', "no field"),
        ('schema = 1\n[[remedy]]\nname = "Bad Name"\nkind = "setup-requires"\nsummary = "s"\n', "lower-case"),
        ("schema = 1\nremedys = []\n", "did you mean 'remedy'"),
        ('schema = 1\n[[remedy]]\nname = "x"\nkind = "compat-header"\nsummary = "s"\n', "needs 'header'"),
        (
            'schema = 1\n[[remedy]]\nname = "x"\nkind = "compat-header"\nsummary = "s"\nheader = "py313-compat.hh"\n',
            "file name of a header",
        ),
        (
            'schema = 1\n[[remedy]]\nname = "x"\nkind = "compat-header"\nsummary = "s"\nheader = "py312-compat.h"\n',
            "unknown header 'py312-compat.h'; did you mean 'py313-compat.h'",
        ),
        (
            'schema = 1\n[[remedy]]\nname = "x"\nkind = "compat-header"\nsummary = "s"\nheader = "../rules.toml"\n',
            "file name of a header",
        ),
        ('[[remedy]]\nname = "x"\nkind = "setup-requires"\nsummary = "s"\n', "schema = 1"),
    ],
)
def test_an_invalid_remedy_file_is_refused_naming_the_field(text: str, says: str) -> None:
    with pytest.raises(RemedySetError) as caught:
        parse_remedies(text)
    assert says in str(caught.value), str(caught.value)


def test_a_rule_naming_a_remedy_that_does_not_exist_is_refused() -> None:
    text = 'schema = 1\n[[remedy]]\nname = "setup-requires"\nkind = "setup-requires"\nsummary = "s"\n'
    with pytest.raises(RemedySetError, match="rule 'some-rule' retries with an unknown remedy 'setup-require'"):
        parse_remedies(text, {"some-rule": ("setup-require",)})
    assert "did you mean 'setup-requires'" in str(
        pytest.raises(RemedySetError, parse_remedies, text, {"r": ["setup-require"]}).value
    )


def test_the_next_remedy_follows_the_rules_and_never_repeats() -> None:
    assert next_remedy(["cython-too-new"], []) == "cython-0-29-py313-compat"
    assert next_remedy(["cython-too-new"], ["cython-0-29-py313-compat"]) == "build-requirements-as-of-upload"
    assert next_remedy(["cython-too-new"], ["build-requirements-as-of-upload", "cython-0-29-py313-compat"]) is None
    assert next_remedy(["header-missing"], []) is None
    assert next_remedy([None], []) is None
    # The latest cause first; when it names none left, the earlier cause's next remedy.
    assert next_remedy(["py-capi-removed", "cython-too-new"], ["cython-0-29-py313-compat"]) == "regenerate-cython"
    assert next_remedy([None, "cython-too-new"], ["cython-0-29-py313-compat"]) == "build-requirements-as-of-upload"
    # Stale C without its .pyx: regeneration finds nothing to change; regeneration with the header is next.
    assert next_remedy([None, "py-capi-removed"], ["regenerate-cython"]) == "regenerate-cython-py313-compat"
    assert next_remedy(["py-undefined-symbol"], ["regenerate-cython"]) == "regenerate-cython-py313-compat"


# -- regenerate-cython ---------------------------------------------------------------------------


def test_regenerate_cython_finds_the_stale_c_and_generates_it_again_with_a_current_cython(tmp_path: Path) -> None:
    pytest.importorskip("Cython")
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "__init__.py").write_text("")
    # Generated at language level 2 (Cython 0.29's default): `a / b` of two ints is an int there.
    (src / "pkg" / "_speed.pyx").write_text("def half(int a):\n    cdef int h = a / 2\n    return h\n")
    (src / "pkg" / "_speed.c").write_text(
        "/* Generated by Cython 0.29.21 */\n#define CYTHON_FUTURE_DIVISION 0\nint stale = _PyLong_AsByteArray();\n"
    )
    (src / "pkg" / "hand.c").write_text("/* written by hand */\n")
    (src / "pkg" / "other.pyx").write_text("x = 1\n")  # no generated C beside it: nothing to do
    said, line = lines()
    prepared = prepare(load_remedies().get("regenerate-cython").changes(), src, SDIST, line)
    assert [(s.pyx.name, s.output.name, s.cython_version, s.language_level_2) for s in prepared.generated] == [
        ("_speed.pyx", "_speed.c", "0.29.21", True)
    ]
    assert "pkg/_speed.c was generated by Cython 0.29.21" in said[0]

    class Direct:  # the sandbox's interface; the pipeline runs this in bubblewrap
        def run(self, cmd: Any, cwd: str | None = None) -> None:
            subprocess.run(cmd, cwd=cwd, check=True)

    regenerate(prepared.generated, Path(sys.executable), src, Direct())
    text = (src / "pkg" / "_speed.c").read_text()
    assert "Generated by Cython 3." in text and "stale" not in text
    assert "#define CYTHON_FUTURE_DIVISION 0" in text  # still at language level 2
    assert (src / "pkg" / "hand.c").read_text() == "/* written by hand */\n"


def test_regenerate_cython_without_a_pyx_is_not_applicable_and_symlinks_are_not_followed(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "only.c").write_text("/* Generated by Cython 0.29.21 */\n")
    outside = tmp_path / "outside.c"
    outside.write_text("/* Generated by Cython 0.29.21 */\n")
    (src / "linked.pyx").write_text("x = 1\n")
    (src / "linked.c").symlink_to(outside)
    assert generated_sources(src) == []
    with pytest.raises(RemedyNotApplicable, match="no C generated by Cython beside a .pyx"):
        prepare(load_remedies().get("regenerate-cython").changes(), src, SDIST, lines()[1])


# -- build requirements as of the upload ---------------------------------------------------------


def test_as_of_upload_limits_uv_to_the_sdists_upload_time_and_real_uv_resolves_so(tmp_path: Path) -> None:
    from builder.pipeline import uv_binary

    changes = load_remedies().get("build-requirements-as-of-upload").changes()
    options = install_options(changes, SDIST, tmp_path, 1)
    assert options[:2] == ["--exclude-newer", "2023-03-08T17:50:48.564091Z"]
    assert options[2] == "--exclude-newer-package" and options[3].startswith("setuptools=")
    # Real uv, against the upstream index: Cython as of that day is 0.29.33.
    out = subprocess.run(
        [
            uv_binary(),
            "pip",
            "compile",
            "--no-config",
            "--system-certs",
            "--no-header",
            "-",
            "--python-version",
            "3.11",
            *options,
        ],
        input="cython\nsetuptools\n",
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "UV_CACHE_DIR": str(tmp_path / "cache")},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "cython==0.29.33" in out.stdout.lower(), out.stdout
    # setuptools is kept current: one of that day would not run on a newer Python.
    setuptools = next(line for line in out.stdout.splitlines() if line.startswith("setuptools=="))
    assert int(setuptools.split("==")[1].split(".")[0]) >= 80, setuptools
    with pytest.raises(RemedyNotApplicable, match="no upload time"):
        prepare(changes, tmp_path, DistFile("demo-1.0.tar.gz", "u", None), lines()[1])


# -- setup_requires --------------------------------------------------------------------------------


def test_setup_requires_are_read_from_setup_py_and_setup_cfg_without_running_them(tmp_path: Path) -> None:
    (tmp_path / "setup.py").write_text(
        "import sys; sys.exit('this file must never run')\n"
        "NEEDS = ['cffi>=1.0', 'pkgconfig']\n"
        "from setuptools import setup\n"
        "setup(name='demo', setup_requires=NEEDS, cffi_modules=['build.py:ffi'])\n"
    )
    (tmp_path / "setup.cfg").write_text("[options]\nsetup_requires =\n    setuptools_scm>=3\n    wheel\n")
    assert declared_setup_requires(tmp_path) == ["setuptools_scm>=3", "wheel", "cffi>=1.0", "pkgconfig", "cffi"]
    said, line = lines()
    prepared = prepare(load_remedies().get("setup-requires").changes(), tmp_path, SDIST, line)
    assert prepared.requirements == ("setuptools_scm>=3", "wheel", "cffi>=1.0", "pkgconfig", "cffi")
    assert "setup_requires read from the sdist" in said[0]


def test_setup_requires_none_declared_is_not_applicable(tmp_path: Path) -> None:
    (tmp_path / "setup.py").write_text("from setuptools import setup\nsetup(name='demo', setup_requires=compute())\n")
    with pytest.raises(RemedyNotApplicable, match="found no setup_requires"):
        prepare(load_remedies().get("setup-requires").changes(), tmp_path, SDIST, lines()[1])


# -- constraint and environment --------------------------------------------------------------------


def test_a_constraint_remedy_goes_to_uv_as_a_constraints_file(tmp_path: Path) -> None:
    changes = load_remedies().get("cython-before-3").changes()
    assert changes.constraints == ("cython<3",)
    assert install_options(changes, SDIST, tmp_path, 3) == ["--constraints", str(tmp_path / "constraints-3.txt")]
    assert (tmp_path / "constraints-3.txt").read_text() == "cython<3\n"


def test_an_environment_remedy_sets_the_builds_variables() -> None:
    changes = load_remedies().get("permissive-c").changes()
    assert "-Wno-error=incompatible-pointer-types" in changes.environment["CFLAGS"]
    assert changes.notes == ("wheelyard: remedy permissive-c: " + load_remedies().get("permissive-c").summary,)
    # Flags add up (an override's, then the remedy's); any other variable is replaced.
    combined = BuildChanges(environment={"CFLAGS": "-O1", "A": "1", "B": "x"}) + changes
    assert combined.environment["CFLAGS"] == "-O1 " + changes.environment["CFLAGS"]
    assert combined.environment["A"] == "1"
    assert (combined + BuildChanges(environment={"B": "y"})).environment["B"] == "y"


def test_fcommon_appends_to_the_overrides_cflags_and_follows_a_forced_header(tmp_path: Path) -> None:
    fcommon = load_remedies().get("fcommon")
    assert fcommon.kind == "environment" and fcommon.environment == {"CFLAGS": "-fcommon"}
    override = BuildChanges(environment={"CFLAGS": "-O1 -DNDEBUG", "LDFLAGS": "-s"}, headers=("py313-compat.h",))
    changes = override + fcommon.changes()
    assert changes.environment == {"CFLAGS": "-O1 -DNDEBUG -fcommon", "LDFLAGS": "-s"}
    forced = forced_includes(changes, tmp_path, lambda line: None)
    header = str(tmp_path / "compat-py313-compat.h")
    assert forced["CFLAGS"] == f"-include {header} -O1 -DNDEBUG -fcommon"
    assert forced["CXXFLAGS"] == f"-include {header}"


# -- the attempts of a build -----------------------------------------------------------------------


def attempts_for(name: str = "demo", **settings: Any) -> Any:
    from builder.attempts import Attempts
    from builder.config import Settings
    from builder.records import BuildRecord

    record = BuildRecord(id="b", name=name, version="1.0", target="cp313-manylinux_x86_64", requirement=name)
    return Attempts(Settings(**settings), record)


STALE = {"primary": {"rule": "py-capi-removed", "category": "python-version-incompat"}}
NEWER = {"primary": {"rule": "cython-too-new", "category": "incompatible-build-tool"}}


def test_attempts_take_one_remedy_each_up_to_the_bound_and_the_settings_turn_them_off() -> None:
    from builder.pipeline import BuildOutcome

    attempts = attempts_for()
    first = attempts.begin()
    assert (first["number"], first["remedy"], first["log"]) == (1, None, "attempt-1")
    assert attempts.choose(NEWER) == "cython-0-29-py313-compat"
    changes: dict[str, Any] = {"diagnosis": NEWER, "next_remedy": "cython-0-29-py313-compat"}
    assert attempts.end(BuildOutcome("failed"), changes) == "cython-0-29-py313-compat"
    attempts.queue_next("cython-0-29-py313-compat")
    second = attempts.begin()
    assert (second["number"], second["remedy"], second["status"]) == (2, "cython-0-29-py313-compat", "building")
    assert "attempt 1 failed: incompatible-build-tool" in attempts.started_line(second)
    assert attempts.choose(NEWER) == "build-requirements-as-of-upload"
    attempts.end(BuildOutcome("failed"), {"diagnosis": {"primary": {"rule": None, "category": "unknown"}}})
    # the first cause's next
    assert attempts.choose({"primary": {"category": "unknown"}}) == "build-requirements-as-of-upload"
    attempts.queue_next("build-requirements-as-of-upload")
    attempts.begin()
    assert attempts.choose(NEWER) is None  # three attempts: the bound

    def after_first(name: str = "demo", **settings: Any) -> str | None:
        attempts = attempts_for(name, **settings)
        attempts.begin()
        return attempts.choose(STALE)  # type: ignore[no-any-return]

    assert after_first() == "regenerate-cython"
    assert after_first(build_attempts=1) is None
    assert after_first(remedies=False) is None
    assert after_first("Demo_Pkg", remedies_skip="other, demo-pkg") is None
    assert after_first("demo", remedies_skip="other, demo-pkg") == "regenerate-cython"


def test_an_attempt_a_lost_worker_left_is_made_again_with_its_remedy_and_not_counted() -> None:
    from builder.attempts import Attempts
    from builder.config import Settings
    from builder.records import BuildRecord

    record = BuildRecord(id="b", name="demo", version="1", target="t", requirement="demo")
    record.attempts = [
        {"number": 1, "remedy": None, "status": "failed", "diagnosis": "python-version-incompat", "log": "attempt-1"},
        {"number": 2, "remedy": "regenerate-cython", "status": "building", "diagnosis": None, "log": "attempt-2"},
    ]
    attempts = Attempts(Settings(build_attempts=2), record)
    again = attempts.begin()
    assert attempts.entries[1]["status"] == "interrupted"
    assert (again["number"], again["remedy"]) == (3, "regenerate-cython")
    assert attempts.counted == 2


# -- compat-header ---------------------------------------------------------------------------------

# An extension written before CPython 3.13: the names 3.13 removed, and _PyLong_AsByteArray with
# the five arguments Cython 0.29's C passes.
OLD_EXTENSION = r"""
#include <Python.h>
static PyObject *abc;
static PyObject *packed_bytes(void) { return abc ? abc : (abc = PyBytes_FromString("abc")); }
static PyObject *roundtrip(PyObject *self, PyObject *args) {
    PyObject *number, *callable;
    unsigned char packed[8], big[16];
    if (!PyArg_ParseTuple(args, "OO", &number, &callable)) return NULL;
    if (_PyFloat_Pack8(PyFloat_AsDouble(number), packed, 1) < 0) return NULL;
    if (_PyLong_AsByteArray((PyLongObject *)PyLong_FromDouble(1e20), big, sizeof big, 1, 0) < 0) return NULL;
    if (_PyGC_FINALIZED(callable)) return NULL;
    const void *read;
    Py_ssize_t read_len;
    if (PyObject_AsReadBuffer(number, &read, &read_len) == 0 || !PyErr_ExceptionMatches(PyExc_TypeError)) return NULL;
    PyErr_Clear();
    if (PyObject_AsReadBuffer(packed_bytes(), &read, &read_len) < 0) return NULL;
    if (read_len != 3 || memcmp(read, "abc", 3) != 0) return NULL;
    PyObject *called = PyEval_CallObject(callable, NULL);
    if (called == NULL) return NULL;
    Py_DECREF(called);
    return PyFloat_FromDouble(_PyFloat_Unpack8(packed, 1) + (_Py_IsFinalizing() ? 1 : 0));
}
static PyObject *stop(PyObject *self, PyObject *value) {
    _PyGen_SetStopIterationValue(value);
    return NULL;
}
static PyObject *optimized(PyObject *self, PyObject *unused) {
    return PyLong_FromLong(_PyInterpreterState_GetConfig(PyThreadState_Get()->interp)->optimization_level);
}
static PyMethodDef methods[] = {
    {"roundtrip", roundtrip, METH_VARARGS, NULL}, {"stop", stop, METH_O, NULL},
    {"optimized", optimized, METH_NOARGS, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "old", NULL, -1, methods};
PyMODINIT_FUNC PyInit_old(void) { return PyModule_Create(&module); }
"""


def compile_extension(python: str, source: Path, flags: list[str]) -> subprocess.CompletedProcess[str]:
    code = "import sysconfig; print(sysconfig.get_paths()['include'], sysconfig.get_config_var('EXT_SUFFIX'))"
    include, suffix = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    out = source.with_name("old" + suffix)
    cmd = ["gcc", "-shared", "-fPIC", "-Werror=implicit-function-declaration", *flags, f"-I{include}", str(source)]
    return subprocess.run([*cmd, "-o", str(out)], capture_output=True, text=True, check=False)


def test_the_compat_header_is_forced_into_every_compile_and_an_old_extension_builds_and_runs_on_313(
    tmp_path: Path,
) -> None:
    from tests.conftest import interpreter

    changes = load_remedies().get("regenerate-cython-py313-compat").changes() + BuildChanges(
        environment={"CFLAGS": "-O1"}
    )
    said, line = lines()
    flags = forced_includes(changes, tmp_path, line)
    header = tmp_path / "compat-py313-compat.h"
    assert flags == {"CFLAGS": f"-include {header} -O1", "CXXFLAGS": f"-include {header}"}
    assert header.stat().st_mode & 0o777 == 0o644 and "PyFloat_Pack8" in header.read_text()
    assert said == ["wheelyard: remedy: py313-compat.h is forced into every C and C++ compile"]
    assert forced_includes(BuildChanges(), tmp_path, line) == {}

    python = interpreter("3.13")
    source = tmp_path / "old.c"
    source.write_text(OLD_EXTENSION)
    as_it_is = compile_extension(python, source, [])
    assert as_it_is.returncode != 0 and "_PyFloat_Pack8" in as_it_is.stderr
    remedied = compile_extension(python, source, flags["CFLAGS"].split())
    assert remedied.returncode == 0, remedied.stderr
    code = (
        "import old\nprint(old.roundtrip(2.5, list), old.optimized())\n"
        "try: old.stop((1, 2))\nexcept StopIteration as e: print(e.value)"
    )
    for options, said in (([], "2.5 0\n(1, 2)"), (["-O"], "2.5 1\n(1, 2)")):
        ran = subprocess.run([python, *options, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=False)
        assert ran.stdout.strip() == said, ran.stderr
    # A compile without Python's headers (a vendored C library) is left as it is.
    (tmp_path / "plain.c").write_text("int _PyFloat_Pack8(void) { return 0; }\n")
    plain = ["gcc", "-c", *flags["CFLAGS"].split(), str(tmp_path / "plain.c"), "-o", str(tmp_path / "plain.o")]
    assert subprocess.run(plain, capture_output=True, text=True, check=False).returncode == 0


def test_cython_0_29_with_the_compat_header_constrains_cython_and_forces_the_header(tmp_path: Path) -> None:
    changes = load_remedies().get("cython-0-29-py313-compat").changes()
    assert changes.constraints == ("cython<3",) and changes.headers == ("py313-compat.h",)
    assert install_options(changes, SDIST, tmp_path, 1) == ["--constraints", str(tmp_path / "constraints-1.txt")]
    assert load_rules().rule("cython-too-new").retry[0] == "cython-0-29-py313-compat"


def test_a_missing_cpython_int_pxd_is_diagnosed_as_cython_too_new_and_retried_with_cython_3_0() -> None:
    from builder.diagnosis.engine import diagnose

    log = [
        "Error compiling Cython file:",
        "------------------------------------------------------------",
        "from cpython.int cimport PyInt_Check",
        "^",
        "------------------------------------------------------------",
        "src/_imports.pyx:12:0: 'cpython/int.pxd' not found",
    ]
    primary = diagnose(log).primary
    assert primary is not None and primary.rule == "cython-py2-names-removed", primary
    assert next_remedy([primary.rule], []) == "cython-3-0"


@pytest.mark.parametrize(
    ("log", "rule"),
    [
        (["Error compiling Cython file:", "-----", "src/roaring.pyx:5:4: Compiler crash"], "cython-compile-error"),
        (
            ['  File "<string>", line 32, in <module>', "Exception: Cython version 0.28 or newer required"],
            "cython-too-new",
        ),
    ],
)
def test_cython_refusing_the_sdists_code_is_retried_with_cython_0_29_and_the_compat_header(
    log: list[str], rule: str
) -> None:
    from builder.diagnosis.engine import diagnose

    primary = diagnose(log).primary
    assert primary is not None and primary.rule == rule, primary
    assert next_remedy([primary.rule], []) == "cython-0-29-py313-compat"


def test_regeneration_with_the_header_applies_without_generated_c_and_regenerates_where_there_is(
    tmp_path: Path,
) -> None:
    changes = load_remedies().get("regenerate-cython-py313-compat").changes()
    assert changes.regenerate_cython == "cython<3.1,>=3.0.11" and changes.headers == ("py313-compat.h",)
    (tmp_path / "ext.c").write_text("/* Generated by Cython 0.29.30 */\n")  # its .pyx is not in the sdist
    said, line = lines()
    assert prepare(changes, tmp_path, SDIST, line).generated == ()
    assert said == ["wheelyard: remedy: no C generated by Cython beside a .pyx in the sdist; the header alone applies"]
    (tmp_path / "ext.pyx").write_text("x = 1\n")
    assert [s.output.name for s in prepare(changes, tmp_path, SDIST, line).generated] == ["ext.c"]
    with pytest.raises(RemedyNotApplicable):  # without the header, nothing to change is not applicable
        prepare(load_remedies().get("regenerate-cython").changes(), tmp_path / "none", SDIST, line)
