# ruff: noqa: E501  (tables of real log lines)
"""Every rule has a realistic snippet; the rule set is validated; the engine's ordering."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from builder.diagnosis import (
    CATEGORIES,
    RULESET_VERSION,
    RuleSetError,
    diagnose,
    diagnose_stream,
    fitting_wheels,
    load_rules,
)
from builder.diagnosis.rules import parse_rules, rules_text

# (rule id, log snippet, 1-based root-cause line in the snippet, category)
CASES: list[tuple[str, str, int, str]] = [
    (
        "sandbox-timeout",
        "building...\nwheelyard: build killed: timeout after 3600 s\n",
        2,
        "timeout",
    ),
    (
        "sandbox-memory",
        "cc1plus\nwheelyard: build killed: out of memory (limit 4294967296 bytes)\n",
        2,
        "out-of-memory",
    ),
    (
        "sandbox-processes",
        "make -j\nwheelyard: build killed: too many processes (limit 512)\n",
        2,
        "too-many-processes",
    ),
    (
        "sandbox-log-size",
        "warning: x\nwheelyard: build killed: log too large (limit 104857600 bytes)\n",
        2,
        "log-too-large",
    ),
    (
        "sandbox-files",
        "writing\nwheelyard: build killed: too many files (limit 200000)\n",
        2,
        "too-many-files",
    ),
    (
        "sandbox-disk",
        "copying\nwheelyard: build killed: disk full (limit 10737418240 bytes)\n",
        2,
        "disk-full",
    ),
    (
        "disk-no-space",
        "  Building wheel for torch (setup.py) ... \n"
        "ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device\n",
        2,
        "disk-full",
    ),
    (
        "oom-compiler-killed",
        "      c++ -O2 -c a.cpp\n      c++: fatal error: Killed signal terminated program cc1plus\n"
        "      compilation terminated.\n      error: command '/usr/bin/c++' failed with exit code 1\n",
        2,
        "out-of-memory",
    ),
    (
        "oom-allocation-failed",
        "  gcc -O2 -c big.c\n  cc1: out of memory allocating 1920048 bytes after a total of 88 bytes\n",
        2,
        "out-of-memory",
    ),
    ("timeout-ci", "Step 4/9\nERROR: Build timed out after 60 minutes\n", 2, "timeout"),
    (
        "timeout-ci",
        "  INFO:   libraries openblas not found in ['/usr/local/lib', '/usr/lib']\n"
        "  INFO: gcc: numpy/core/src/multiarray/ctors.c\n\n"
        "command timed out: 120 seconds elapsed running [b'python', b'-m', b'pip', b'wheel', b'numpy==1.24.4'], attempting to kill\n"
        "process killed by signal 9\nprogram finished with exit code -1\n",
        4,
        "timeout",
    ),
    (
        "py-capi-removed",
        "      multidict/_multidict.c:1:1: warning: unused\n"
        "      multidict/_multidict.c:5:23: error: 'PyLongObject' {aka 'struct _longobject'} has no "
        "member named 'ob_digit'\n      error: command '/usr/bin/gcc' failed with exit code 1\n",
        2,
        "python-version-incompat",
    ),
    (
        "py-capi-removed-note",
        "      a.c:3:70: error: too few arguments to function call, expected 6, have 5\n"
        "                   is_little, !is_unsigned);\n"
        "      /usr/include/python3.13/cpython/longobject.h:111:17: note: '_PyLong_AsByteArray' "
        "declared here\n",
        1,
        "python-version-incompat",
    ),
    (
        "py-longintrepr-moved",
        "  gcc -I/usr/include/python3.11 -c pkg/_speedups.c\n"
        "  pkg/_speedups.c:12:10: fatal error: longintrepr.h: No such file or directory\n",
        2,
        "python-version-incompat",
    ),
    (
        "py-stdlib-removed",
        '      File "setup.py", line 3, in <module>\n'
        "        from distutils.core import setup\n"
        "    ModuleNotFoundError: No module named 'distutils'\n",
        3,
        "python-version-incompat",
    ),
    (
        "py-requires-python",
        "Collecting numpy==1.26.4\nERROR: Package 'numpy' requires a different Python: 3.8.10 not in '>=3.9'\n",
        2,
        "python-version-incompat",
    ),
    (
        "msvc-missing",
        "    building 'markupsafe._speedups' extension\n"
        '    error: Microsoft Visual C++ 14.0 or greater is required. Get it with "Microsoft C++ '
        'Build Tools": https://visualstudio.microsoft.com/visual-cpp-build-tools/\n',
        2,
        "missing-msvc",
    ),
    (
        "cxx-compiler-missing",
        "  building 'x' extension\n  gcc -c x.cpp\n  error: command 'g++' failed: No such file or directory\n",
        3,
        "missing-cxx-compiler",
    ),
    (
        "c-compiler-missing",
        "  building 'x' extension\n  error: command 'gcc' failed: No such file or directory\n",
        2,
        "missing-c-compiler",
    ),
    (
        "fortran-missing",
        "  Could not locate executable gfortran\n  Could not locate executable f95\n"
        "  error: library dfftpack has Fortran sources but no Fortran compiler found\n",
        3,
        "missing-fortran",
    ),
    (
        "blas-missing",
        '    ../meson.build:1:0: ERROR: Dependency "OpenBLAS" not found, tried pkgconfig and cmake\n',
        1,
        "missing-blas",
    ),
    (
        "rust-too-old",
        "      error: Rust 1.48.0 does not match extension requirement >=1.56.0\n",
        1,
        "missing-rust",
    ),
    (
        "rust-missing",
        "      running build_rust\n      error: can't find Rust compiler\n",
        2,
        "missing-rust",
    ),
    (
        "cargo-dependency-unavailable",
        "  Running `maturin pep517 write-dist-info --metadata-directory /tmp/pip-modern-metadata-x`\n"
        "  error: no matching package named `pyo3` found\n"
        "  location searched: crates.io index\n"
        "  required by package `rusty v0.1.0 (/tmp/rusty)`\n"
        "  💥 maturin failed\n"
        "    Caused by: Cargo metadata failed. Does your crate compile with `cargo build`?\n",
        2,
        "network-failure",
    ),
    (
        "python-headers-missing",
        "  gcc -I/usr/include/python3.10 -c a.c\n"
        "  a.c:1:10: fatal error: Python.h: No such file or directory\n"
        "  compilation terminated.\n  error: command 'x86_64-linux-gnu-gcc' failed with exit "
        "status 1\n",
        2,
        "missing-python-headers",
    ),
    (
        "build-dep-header-missing",
        "  src/fast.c:4:10: fatal error: numpy/arrayobject.h: No such file or directory\n",
        1,
        "missing-build-dependency",
    ),
    (
        "header-missing",
        "  c/_cffi_backend.c:15:10: fatal error: ffi.h: No such file or directory\n     15 | #include <ffi.h>\n",
        1,
        "missing-library-header",
    ),
    (
        "library-dependency-missing",
        "  Package libffi was not found in the pkg-config search path.\n",
        1,
        "missing-library-header",
    ),
    (
        "linker-library-missing",
        "  gcc -shared a.o -lssl -o a.so\n  /usr/bin/ld: cannot find -lssl: No such file or directory\n"
        "  collect2: error: ld returned 1 exit status\n",
        2,
        "linker-missing-library",
    ),
    (
        "config-tool-missing",
        "    /bin/sh: 1: mysql_config: not found\n    OSError: mysql_config not found\n",
        1,
        "missing-config-tool",
    ),
    (
        "build-tool-missing",
        "      running build_ext\n      RuntimeError: CMake must be installed to build qdldl\n",
        2,
        "missing-build-tool",
    ),
    (
        "cmake-too-new",
        "      CMake Error at CMakeLists.txt:1 (cmake_minimum_required):\n"
        "        Compatibility with CMake < 3.5 has been removed from CMake.\n",
        2,
        "incompatible-build-tool",
    ),
    (
        "build-tool-too-old",
        "  CMake Error at CMakeLists.txt:1 (cmake_minimum_required):\n"
        "    CMake 3.18 or higher is required.  You are running version 3.10.2\n",
        2,
        "missing-build-tool",
    ),
    (
        "setuptools-too-new",
        "    error in anyjson setup command: use_2to3 is invalid.\n",
        1,
        "incompatible-build-tool",
    ),
    (
        "build-module-missing",
        '      File "setup.py", line 2, in <module>\n        import numpy\n'
        "  ModuleNotFoundError: No module named 'numpy'\n",
        3,
        "missing-build-dependency",
    ),
    (
        "network-error",
        "  WARNING: Retrying (Retry(total=4, connect=None, read=None, redirect=None, status=None)) "
        "after connection broken by 'NewConnectionError('<x>: Failed to establish a new connection: "
        "[Errno -3] Temporary failure in name resolution')': /simple/setuptools/\n"
        "  ERROR: Could not find a version that satisfies the requirement setuptools>=40.8.0 "
        "(from versions: none)\n",
        1,
        "network-failure",
    ),
    (
        "no-matching-distribution",
        "ERROR: Could not find a version that satisfies the requirement torch==1.4.0 (from "
        "versions: 2.2.0, 2.3.0)\nERROR: No matching distribution found for torch==1.4.0\n",
        1,
        "no-distribution",
    ),
    (
        "compile-newer-compiler-defaults",
        "src/x.c:10:20: error: call to undeclared function 'readlink'; ISO C99 and later do not "
        "support implicit function declarations [-Wimplicit-function-declaration]\n",
        1,
        "compile-error",
    ),
    (
        "source-file-missing",
        "  gcc -c src/missing.c\n  gcc: error: src/missing.c: No such file or directory\n",
        2,
        "compile-error",
    ),
    (
        "sdist-file-missing",
        '        File "<string>", line 58, in <module>\n'
        "          with open('requirements-docs.txt') as f:\n"
        "      FileNotFoundError: [Errno 2] No such file or directory: "
        "'/tmp/pip-install-x/tensorflow-transform/src/requirements-docs.txt'\n",
        3,
        "compile-error",
    ),
    (
        "compile-error-generic",
        "  src/a.cpp:12:5: error: 'string_view' is not a member of 'std'\n"
        "  error: command '/usr/bin/g++' failed with exit code 1\n",
        1,
        "compile-error",
    ),
    (
        "py-undefined-symbol",
        "==> prove\n"
        '  File "<frozen importlib._bootstrap>", line 488, in _call_with_frames_removed\n'
        "ImportError: /tmp/w/proveenv/lib/python3.13/site-packages/fastx.cpython-313-x86_64-linux-gnu.so: undefined symbol: _PyObject_LookupAttrId\n",
        3,
        "python-version-incompat",
    ),
    (
        "import-failed",
        "==> prove\n"
        "Traceback (most recent call last):\n"
        '  File "/tmp/w/proveenv/lib/python3.12/site-packages/tinypkg/__init__.py", line 1, in <module>\n'
        "    from . import _helpers\n"
        "ImportError: cannot import name '_helpers' from 'tinypkg' (/tmp/w/proveenv/lib/python3.12/site-packages/tinypkg/__init__.py)\n"
        "wheelyard: build failed: the wheel installed but importing tinypkg failed\n",
        5,
        "import-failed",
    ),
    (
        "pkg-config-missing",
        "  Found pkg-config: NO\n"
        "  ../meson.build:12:10: ERROR: Pkg-config for machine host machine not found. Giving up.\n",
        1,
        "missing-config-tool",
    ),
    (
        "linker-python-missing",
        "  /usr/bin/ld: cannot find -lpython3.12: No such file or directory\n"
        "  collect2: error: ld returned 1 exit status\n",
        1,
        "linker-missing-library",
    ),
    (
        "py2-only-sdist",
        '           File "<string>", line 22\n'
        '             print "Unable to find the library"\n'
        "             ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
        "         SyntaxError: Missing parentheses in call to 'print'. Did you mean print(...)?\n",
        4,
        "python-version-incompat",
    ),
    (
        "cython-too-new",
        '    File "<string>", line 204, in get_source_files\n'
        "  AttributeError: 'build_ext' object has no attribute 'cython_sources'\n"
        "  error: subprocess-exited-with-error\n",
        2,
        "incompatible-build-tool",
    ),
    (
        "cython-compile-error",
        "[1/1] Cythonizing pyroaring.pyx\n"
        "Error compiling Cython file:\n"
        "------------------------------------------------------------\n"
        "    def __or__(self, other):\n"
        "------------------------------------------------------------\n"
        "abstract_bitmap.pxi:151:8: Cannot convert 'AbstractBitMap' to Python object\n",
        2,
        "compile-error",
    ),
    (
        "cython-py2-names-removed",
        "Error compiling Cython file:\n"
        "------------------------------------------------------------\n"
        "            elif PyInt_CheckExact(o) if strict_types else PyInt_Check(o):\n"
        "                 ^\n"
        "------------------------------------------------------------\n"
        "_packer.pyx:189:17: undeclared name not builtin: PyInt_CheckExact\n",
        6,
        "incompatible-build-tool",
    ),
    (
        "build-dependency-unreachable",
        "  Installing build dependencies: started\n"
        "  Looking in indexes: http://127.0.0.1:9/simple/\n"
        "  ERROR: Could not find a version that satisfies the requirement setuptools>=40.8.0 (from versions: none)\n"
        "  ERROR: No matching distribution found for setuptools>=40.8.0\n"
        "  Installing build dependencies: finished with status 'error'\n",
        3,
        "network-failure",
    ),
    (
        "py-requires-python-skipped",
        "Collecting numba==0.54.1\n"
        "ERROR: Ignored the following versions that require a different python version: 0.53.1 Requires-Python >=3.6,<3.10; 0.54.1 Requires-Python >=3.7,<3.10\n"
        "ERROR: Could not find a version that satisfies the requirement numba==0.54.1 (from versions: 0.1, 0.2, 0.51.2)\n"
        "ERROR: No matching distribution found for numba==0.54.1\n",
        2,
        "python-version-incompat",
    ),
    (
        "pip-too-old-for-pyproject",
        "  Running setup.py (path:/tmp/pip-wheel-x/unittest-parallel/setup.py) egg_info for package unittest-parallel\n"
        "    Running command python setup.py egg_info\n"
        "    Traceback (most recent call last):\n"
        '      File "<string>", line 1, in <module>\n'
        "    FileNotFoundError: [Errno 2] No such file or directory: '/tmp/pip-wheel-x/unittest-parallel/setup.py'\n"
        'Command "python setup.py egg_info" failed with error code 1 in /tmp/pip-wheel-x/unittest-parallel/\n',
        5,
        "missing-build-tool",
    ),
    (
        "py-requires-python-link",
        "Collecting pandas==1.5.3\n"
        "  Link requires a different Python (3.7.16 not in: '>=3.8'): https://files.pythonhosted.org/packages/4d/aa/e7/pandas-1.5.2.tar.gz#sha256=1 (from https://pypi.org/simple/pandas/) (requires-python:>=3.8)\n"
        "  Link requires a different Python (3.7.16 not in: '>=3.8'): https://files.pythonhosted.org/packages/74/ee/14/pandas-1.5.3.tar.gz#sha256=2 (from https://pypi.org/simple/pandas/) (requires-python:>=3.8)\n"
        "ERROR: Could not find a version that satisfies the requirement pandas==1.5.3 (from versions: 0.1, 1.3.5)\n"
        "ERROR: No matching distribution found for pandas==1.5.3\n",
        3,
        "python-version-incompat",
    ),
]


CASES += [
    (
        "library-missing-prose",
        "  <string>:9: DeprecationWarning: pkg_resources is deprecated as an API.\n"
        "  proj executable not found. Please set the PROJ_DIR variable. For more information see: https://pyproj4.github.io/pyproj/stable/installation.html\n"
        "  error: subprocess-exited-with-error\n",
        2,
        "missing-library-header",
    ),
    (
        "tool-missing-prose",
        "  running build_ext\n  RuntimeError: Could not find the protoc executable. Install protobuf-compiler.\n",
        2,
        "missing-build-tool",
    ),
]
CASES += [
    (
        "py-exec-locals",
        '    File "<string>", line 26, in get_version\n'
        "  KeyError: '__version__'\n"
        "  error: subprocess-exited-with-error\n",
        2,
        "python-version-incompat",
    ),
    (
        "pyproject-rejected",
        "error: Failed to download and build `orjson==3.6.0`\n"
        "  cause: TOML parse error at line 1, column 1\n"
        "         `pyproject.toml` is using the `[project]` table, but the required `project.version` field is neither set nor present in the `project.dynamic` list\n",
        3,
        "incompatible-build-tool",
    ),
]
CASES += [
    (
        "build-tool-too-old",
        "  Build type: native build\n"
        "\n"
        "  ../../meson.build:1:0: ERROR: Meson version is 0.64.1 but project requires >= 1.1.0\n",
        3,
        "missing-build-tool",
    ),
    (
        "build-tool-too-old",
        "  2026-12-01 19:50:46,990 - scikit_build_core - INFO - CMake version: 3.25.1\n"
        "  Traceback (most recent call last):\n"
        "  scikit_build_core.errors.CMakeNotFoundError: Could not find CMake with version >=3.28\n",
        3,
        "missing-build-tool",
    ),
    (
        "tool-missing-prose",
        "      raise Exception('Unable to find javac')\n  Exception: Unable to find javac\n  error: subprocess-exited-with-error\n",
        2,
        "missing-build-tool",
    ),
]
CASES.append(
    (
        "link-multiple-definition",
        "  gcc -shared build/source/py_gpio.o build/source/common.o -o build/RPi/_GPIO.so\n"
        "  /usr/bin/ld: build/source/common.o:/src/source/common.h:41: multiple definition of `module_setup'; "
        "build/source/py_gpio.o:/src/source/common.h:41: first defined here\n"
        "  collect2: error: ld returned 1 exit status\n",
        2,
        "compile-error",
    )
)
CASES.append(
    (
        "build-missing-dependencies",
        "* Getting build dependencies for wheel...\nERROR Missing dependencies:\n\tcython>=3\n",
        2,
        "missing-build-dependency",
    )
)


def _lines(snippet: str) -> list[str]:
    return snippet.splitlines()


@pytest.mark.parametrize(("rule_id", "snippet", "line", "category"), CASES, ids=[c[0] for c in CASES])
def test_rule(rule_id: str, snippet: str, line: int, category: str) -> None:
    d = diagnose(_lines(snippet))
    assert d.primary.rule == rule_id, d.primary
    assert d.primary.category == category
    assert d.primary.line == line
    assert d.primary.text == _lines(snippet)[line - 1]
    assert d.primary.explanation and "{" not in d.primary.explanation
    assert all("{" not in r.text for r in d.primary.remedies)


def test_every_rule_has_a_case() -> None:
    tested = {c[0] for c in CASES}
    missing = [r.id for r in load_rules().rules if r.id not in tested]
    assert not missing, f"rules without a test case: {missing}"


# -- wordings: the same failure said by other tools ------------------------------------

WORDINGS: list[tuple[str, str]] = [
    (
        "  scs/include/glbopts.h:51:10: fatal error: 'Python.h' file not found",
        "missing-python-headers",
    ),
    (
        "  C:\\x\\a.c(3): fatal error C1083: Cannot open include file: 'Python.h': No such file or directory",
        "missing-python-headers",
    ),
    ("  a.c:1:10: fatal error: Python.h: Нет такого файла или каталога", "missing-python-headers"),
    (
        "  src\\zip.h(43) : fatal error C1083: Cannot open include file: 'zlib.h': No such file or directory",
        "missing-library-header",
    ),
    ("  src/a.c:2:10: fatal error: 'openssl/ssl.h' file not found", "missing-library-header"),
    ("  The headers or library files could not be found for zlib,", "missing-library-header"),
    ("  ld: library not found for -lssl", "linker-missing-library"),
    ("  LINK : fatal error LNK1181: cannot open input file 'libssl.lib'", "linker-missing-library"),
    (
        "   unable to execute 'x86_64-linux-gnu-gcc': No such file or directory",
        "missing-c-compiler",
    ),
    ("  error: [Errno 2] No such file or directory: 'clang'", "missing-c-compiler"),
    (
        "  xcrun: error: invalid active developer path (/Library/Developer/CommandLineTools), "
        "missing xcrun at: /Library/Developer/CommandLineTools/usr/bin/xcrun",
        "missing-c-compiler",
    ),
    ("  -- No CMAKE_CXX_COMPILER could be found.", "missing-cxx-compiler"),
    (
        "  CMake Error at CMakeLists.txt:2 (project): No CMAKE_CXX_COMPILER could be found.",
        "missing-cxx-compiler",
    ),
    (
        "  ../meson.build:1:0: ERROR: Unknown compiler(s): [['cc'], ['gcc'], ['clang']]",
        "missing-c-compiler",
    ),
    (
        "  ../meson.build:1:0: ERROR: Unknown compiler(s): [['gfortran'], ['flang']]",
        "missing-fortran",
    ),
    ("  error: Unable to find vcvarsall.bat", "missing-msvc"),
    ("  Cargo, the Rust package manager, is not installed or is not on PATH.", "missing-rust"),
    (
        "  error: package `pyo3 v0.22.0` cannot be built because it requires rustc 1.63 or newer, "
        "while the currently active rustc version is 1.59.0",
        "missing-rust",
    ),
    ("    Caused by: Cargo metadata failed. Do you have cargo in your PATH?", "missing-rust"),
    ("error: failed to get `pyo3` as a dependency of package `demo v0.1.0 (/work/src/demo)`", "network-failure"),
    ("error: no matching package named `serde` found", "network-failure"),
    ("  error: no matching package found", "network-failure"),
    (
        'error: failed to select a version for the requirement `pyo3 = "^0.22"`',
        "network-failure",
    ),
    ("error: failed to download from `https://index.crates.io/config.json`", "network-failure"),
    ("  Unable to update registry `crates-io`", "network-failure"),
    ("  failed to read root of directory source: /usr/share/cargo/registry", "network-failure"),
    ("  Error: pg_config executable not found.", "missing-config-tool"),
    ("  /bin/sh: 1: krb5-config: not found", "missing-config-tool"),
    ("  sh: xml2-config: command not found", "missing-config-tool"),
    ("                   CMake is not installed on your system!", "missing-build-tool"),
    ("  error: command 'swig' failed: No such file or directory", "missing-build-tool"),
    ("  numpy.distutils.system_info.NotFoundError: no lapack/blas resources found", "missing-blas"),
    ("gcc: internal compiler error: Killed (program cc1plus)", "out-of-memory"),
    ("  collect2: fatal error: ld terminated with signal 9 [Killed]", "out-of-memory"),
    (
        "  AttributeError: module 'pkgutil' has no attribute 'ImpImporter'. Did you mean: 'zipimporter'?",
        "python-version-incompat",
    ),
    (
        "  error: the configured Python interpreter version (3.13) is newer than PyO3's maximum "
        "supported version (3.12)",
        "python-version-incompat",
    ),
    (
        "      uvloop/loop.c:177586:27: error: too few arguments to function ‘_PyLong_AsByteArray’",
        "python-version-incompat",
    ),
    (
        "  pyo3/x.c:5:1: error: ‘PyThreadState’ {aka ‘struct _ts’} has no member named ‘curexc_traceback’",
        "python-version-incompat",
    ),
    ("  ModuleNotFoundError: No module named 'setuptools'", "missing-build-dependency"),
    (
        "  pip._vendor.pyproject_hooks._impl.BackendUnavailable: Cannot import 'setuptools.build_meta'",
        "missing-build-dependency",
    ),
    (
        "  ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device",
        "disk-full",
    ),
    (
        "  WARNING: Retrying (Retry(total=4, connect=None, read=None, redirect=None, status=None)) "
        "after connection broken by 'ProxyError('Cannot connect to proxy.', "
        "ConnectionResetError(54, 'Connection reset by peer'))': /simple/setuptools/",
        "network-failure",
    ),
    (
        "  Could not fetch URL https://pypi.org/simple/pip/: There was a problem confirming the ssl certificate",
        "network-failure",
    ),
    ("  ERROR: No matching distribution found for tensorflow==1.15", "no-distribution"),
    ("error[E0425]: cannot find value `x` in this scope", "compile-error"),
    (
        "  /usr/bin/ld: b.o:/src/common.h:41: multiple definition of `module_setup'; a.o:/src/common.h:41: first defined here",
        "compile-error",
    ),
    ("  ld.lld: error: duplicate symbol: module_setup", "compile-error"),
    ("duplicate symbol '_module_setup' in:", "compile-error"),
    ("  b.obj : error LNK2005: module_setup already defined in a.obj", "compile-error"),
    ("  x.c(10): error C2065: 'ssize_t': undeclared identifier", "compile-error"),
    # the wording classes of issue 13, each said by other tools
    ("  g++: fatal error: cannot execute 'cc1plus': execvp: No such file or directory", "missing-cxx-compiler"),
    ("  gcc: error trying to exec 'cc1plus': execvp: No such file or directory", "missing-cxx-compiler"),
    ("  FileNotFoundError: [Errno 2] No such file or directory: 'gcc'", "missing-c-compiler"),
    ("      FileNotFoundError: [Errno 2] No such file or directory: 'x86_64-linux-gnu-g++'", "missing-cxx-compiler"),
    ("  '\"cl.exe\" /nologo /O2' is not recognized as an internal or external command,", "missing-msvc"),
    ("  '\"gcc\" -O2 -c a.c' is not recognized as an internal or external command,", "missing-c-compiler"),
    ("  numpy requires Python '>=3.9' but the running Python is 3.6.15", "python-version-incompat"),
    (
        "  Because the current Python version (3.8.18) does not satisfy Python>=3.9 and numpy==2.0.0 depends on Python>=3.9, we can conclude that numpy==2.0.0 cannot be used.",
        "python-version-incompat",
    ),
    ("  The CMAKE_CXX_COMPILER: g++ is not a full path and was not found in the PATH.", "missing-cxx-compiler"),
    ("  ../meson.build:1:0: ERROR: Unknown compiler(s): [['gcc'], ['cc'], ['clang']]", "missing-c-compiler"),
    (
        "  ../meson.build:1:0: ERROR: Unknown compiler(s): [['icpx'], ['c++'], ['g++'], ['clang++']]",
        "missing-cxx-compiler",
    ),
    ("  meson.build:5:0: ERROR: Unknown compiler(s): [['gfortran'], ['flang'], ['ifort']]", "missing-fortran"),
    ("  numpy.distutils.system_info.NotFoundError: No BLAS/LAPACK libraries detected", "missing-blas"),
    ("  ERROR: BLAS not detected", "missing-blas"),
    (
        "  C:\\x\\lxml.etree.c(97): fatal error C1083: Cannot open include file: 'longintrepr.h': No such file or directory",
        "python-version-incompat",
    ),
    ("  x86_64-linux-gnu-gcc: error: src/_speedups.c: No such file or directory", "compile-error"),
    ("  icx: error: no such file or directory: 'src/a.c'", "compile-error"),
    (
        "  a.c:10:5: error: implicit declaration of function 'PyCode_New' [-Wimplicit-function-declaration]",
        "python-version-incompat",
    ),
    (
        "  a.c:99:9: error: '_PyErr_WriteUnraisableMsg' undeclared (first use in this function)",
        "python-version-incompat",
    ),
    ("  ModuleNotFoundError: No module named 'pkg_resources'", "incompatible-build-tool"),
    ("  ModuleNotFoundError: No module named 'ConfigParser'", "python-version-incompat"),
    ("  NameError: name 'execfile' is not defined", "python-version-incompat"),
    ("  Package libffi was not found in the pkg-config search path.", "missing-library-header"),
    ("  /bin/sh: 1: pkg-config: not found", "missing-config-tool"),
    ("  ld: library not found for -lpython3.11", "linker-missing-library"),
    (
        "  warning: spurious network error (2 tries remaining): [6] Could not resolve hostname (Could not resolve host: index.crates.io)",
        "network-failure",
    ),
    ("  × Failed to fetch: `http://127.0.0.1:9/simple/setuptools/`", "network-failure"),
    ("  Caused by: tcp connect error: Connection refused (os error 111)", "network-failure"),
    ("2024-03-01T10:22:33.1234567Z   error: [Errno 2] No such file or directory: 'gcc'", "missing-c-compiler"),
    ("##[error]  a.c:1:10: fatal error: ffi.h: No such file or directory", "missing-library-header"),
    ("\x1b[31m  a.c:1:10: \x1b[1mfatal error: \x1b[0mffi.h: No such file or directory", "missing-library-header"),
    # a CI service's time limit, in the words of each service
    ("command timed out: 1200 seconds without output running [b'make', b'all'], attempting to kill", "timeout"),
    ("ERROR: Job failed: execution took longer than 1h0m0s seconds", "timeout"),
    (
        "##[error]The job running on agent Hosted Agent ran longer than the maximum time of 60 minutes. "
        "For more information, see https://go.microsoft.com/fwlink/?linkid=2077134",
        "timeout",
    ),
    (
        "##[error]The job running on runner GitHub Actions 2 has exceeded the maximum execution time of 360 minutes.",
        "timeout",
    ),
    ("The job exceeded the maximum time limit for jobs, and has been terminated.", "timeout"),
    (
        "No output has been received in the last 10m0s, this potentially indicates a stalled build or "
        "something wrong with the build itself.",
        "timeout",
    ),
    ("Too long with no output (exceeded 10m0s): context deadline exceeded", "timeout"),
    ("Build timed out (after 30 minutes). Marking the build as failed.", "timeout"),
    (
        'autopkgtest [10:02:03]: ERROR: timed out on command "su -s /bin/bash root -c set -e; '
        'buildtree="/tmp/autopkgtest.D6ie3x/build.PZ7/real-tree"; cd "$buildtree"; debian/tests/build-wheel" (kind: test)',
        "timeout",
    ),
    ("build-wheel          FAIL timed out", "timeout"),
    # a file of the source tree that the sdist does not ship, read by the build's own code
    ("  IOError: [Errno 2] No such file or directory: 'README.rst'", "compile-error"),
    ('  FileNotFoundError: [Errno 2] No such file or directory: "src/VERSION"', "compile-error"),
    ("  OSError: [Errno 2] No such file or directory: 'requirements/base.txt'", "compile-error"),
]


@pytest.mark.parametrize(("line", "category"), WORDINGS)
def test_wordings(line: str, category: str) -> None:
    d = diagnose([line])
    assert d.primary.category == category, d.primary
    assert d.primary.line == 1


@pytest.mark.parametrize(
    ("line", "symbol"),
    [
        (
            "  /usr/bin/ld: b.o:/src/common.h:41: multiple definition of `module_setup'; a.o:/src/common.h:41: first defined here",
            "module_setup",
        ),
        ("  /usr/bin/ld: b.o: multiple definition of ‘setup_error’; a.o: first defined here", "setup_error"),
        ("  ld.lld: error: duplicate symbol: module_setup", "module_setup"),
        ("duplicate symbol '_module_setup' in:", "_module_setup"),
        ("  b.obj : error LNK2005: module_setup already defined in a.obj", "module_setup"),
    ],
)
def test_a_symbol_defined_twice_is_retried_with_fcommon_whichever_linker_says_it(line: str, symbol: str) -> None:
    primary = diagnose([line, "  collect2: error: ld returned 1 exit status"]).primary
    assert primary.rule == "link-multiple-definition" and primary.category == "compile-error"
    assert primary.detail == f"{symbol} defined twice"
    assert load_rules().rule("link-multiple-definition").retry == ("fcommon",)


def test_an_undefined_reference_stays_a_generic_compile_error() -> None:
    primary = diagnose(["  a.c:(.text+0x1d): undefined reference to `module_setup'"]).primary
    assert primary.rule == "compile-error-generic"


# Timeouts that are not a CI service's time limit: the network's, or a tool's own.
NOT_A_CI_TIME_LIMIT = [
    "  WARNING: Retrying (Retry(total=4, connect=None, read=None, redirect=None, status=None)) after connection "
    "broken by 'ReadTimeoutError(\"HTTPSConnectionPool(host='pypi.org', port=443): Read timed out. (read timeout=15)\")': /simple/numpy/",
    "pip._vendor.urllib3.exceptions.ReadTimeoutError: HTTPSConnectionPool(host='files.pythonhosted.org', port=443): Read timed out.",
    "TimeoutError: The read operation timed out",
    "  socket.timeout: timed out",
    "  subprocess.TimeoutExpired: Command '['git', 'fetch', 'origin']' timed out after 30 seconds",
    "  curl: (28) Operation timed out after 30001 milliseconds with 0 out of 0 bytes received",
    "  warning: spurious network error (2 tries remaining): [28] Timeout was reached (Connection timed out after 30001 milliseconds)",
    "  Test command timed out: 60 seconds",
    "command1             FAIL non-zero exit status 1",
    "  FAIL: test_read (tests.test_client.ClientTests) timed out",
]


@pytest.mark.parametrize("line", NOT_A_CI_TIME_LIMIT)
def test_other_timeouts_are_not_a_ci_time_limit(line: str) -> None:
    d = diagnose([line])
    assert all(c.rule != "timeout-ci" for c in d.causes), d.causes
    assert d.primary.category != "timeout"


# -- what is NOT a cause ----------------------------------------------------------------

NOT_CAUSES = [
    "  error: subprocess-exited-with-error",
    "  ERROR: Failed building wheel for markupsafe",
    "error: metadata-generation-failed",
    "error: legacy-install-failure",
    "  error: command 'x86_64-linux-gnu-gcc' failed with exit code 1",
    "  error: command '/usr/bin/gcc' failed with exit status 1",
    "  note: This error originates from a subprocess, and is likely not a problem with pip.",
    "  Could not locate executable gfortran",
    "  x.c:3:1: warning: implicit declaration of function 'foo' [-Wimplicit-function-declaration]",
    "  gcc -Werror=format-security -c a.c",
    "  pip._internal.exceptions.InstallationSubprocessError: Command errored out with exit status 1",
]


@pytest.mark.parametrize("line", NOT_CAUSES)
def test_generic_lines_are_not_causes(line: str) -> None:
    d = diagnose([line])
    assert not d.causes, d.causes


def test_generic_gcc_exit_is_not_missing_compiler() -> None:
    d = diagnose(
        [
            "  a.c:1:2: error: expected ';' before '}' token",
            "  error: command 'x86_64-linux-gnu-gcc' failed with exit code 1",
        ]
    )
    assert d.primary.category == "compile-error"
    assert d.primary.line == 1


# pip's whole list of the releases it skipped for their Requires-Python explains a "no matching
# distribution" only when it holds the release asked for: else that release has no file at all.
def _skipped(listed: str) -> list[str]:
    return [
        "Collecting pytorch-tokenizers==1.5.0",
        f"ERROR: Ignored the following versions that require a different python version: {listed}",
        "ERROR: Could not find a version that satisfies the requirement pytorch-tokenizers==1.5.0 (from versions: none)",
        "ERROR: No matching distribution found for pytorch-tokenizers==1.5.0",
    ]


@pytest.mark.parametrize(
    ("listed", "category", "line"),
    [
        ("1.0.1 Requires-Python >=3.10", "no-distribution", 3),
        ("1.0.1 Requires-Python >=3.10; 1.5.0 Requires-Python >=3.10", "python-version-incompat", 2),
        ("1.0.1 Requires-Python >=3.10; 1.5.0 Requires-Python >=3.10, <4", "python-version-incompat", 2),
        ("1.0.1 Requires-Python >=3.10; 1.4.0 Requires-Pyth [... 300 characters cut]", "python-version-incompat", 2),
    ],
)
def test_skipped_releases_explain_only_the_one_asked_for(listed: str, category: str, line: int) -> None:
    d = diagnose(_skipped(listed))
    assert (d.primary.category, d.primary.line) == (category, line), d.primary


def test_a_missing_setup_py_is_not_a_file_missing_from_the_sdist() -> None:
    d = diagnose(["  FileNotFoundError: [Errno 2] No such file or directory: '/tmp/pip-wheel-x/pkg/setup.py'"])
    assert all(c.rule != "sdist-file-missing" for c in d.causes), d.causes
    assert d.primary.rule == "pip-too-old-for-pyproject"


@pytest.mark.parametrize(
    ("path", "file"),
    [
        ("libstemmer_c-2.2.0/mkinc_utf8.mak", "mkinc_utf8.mak"),  # PyStemmer 2.2.0's sdist, a real build
        ("/tmp/pip-install-x/pkg/requirements-docs.txt", "requirements-docs.txt"),
        ("C:\\Users\\me\\AppData\\Local\\Temp\\pip-install-x\\pkg\\VERSION", "VERSION"),
        ("src/data/table.json", "table.json"),
    ],
)
def test_a_data_file_the_build_reads_and_the_sdist_lacks(path: str, file: str) -> None:
    d = diagnose(
        [
            '  File "<string>", line 74, in iter_manifest_lines',
            f"FileNotFoundError: [Errno 2] No such file or directory: '{path}'",
        ]
    )
    assert (d.primary.rule, d.primary.detail) == ("sdist-file-missing", f"{file} missing from the sdist")


@pytest.mark.parametrize(
    "path",
    ["cl.exe", "/usr/lib/x86_64-linux-gnu/libfoo.so.1", "src/include/x.h", "/etc/os-release", "build/lib/_x.so"],
)
def test_programs_headers_libraries_and_system_files_are_not_the_sdists(path: str) -> None:
    d = diagnose([f"  FileNotFoundError: [Errno 2] No such file or directory: '{path}'"])
    assert all(c.rule != "sdist-file-missing" for c in d.causes), d.causes


@pytest.mark.parametrize(
    ("line", "rule", "tool"),
    [
        ("RuntimeError: Could not find gcc", "c-compiler-missing", "gcc"),
        ("Exception: Unable to find the C compiler 'cc'.", "c-compiler-missing", "cc"),
        ("error: could not find clang-14", "c-compiler-missing", "clang-14"),
        ("RuntimeError: Could not find g++", "cxx-compiler-missing", "g++"),
        ("Exception: Unable to find the C++ compiler clang++", "cxx-compiler-missing", "clang++"),
        ("Exception: Unable to find javac", "tool-missing-prose", "javac"),
    ],
)
def test_a_build_scripts_exception_naming_a_missing_compiler(line: str, rule: str, tool: str) -> None:
    d = diagnose(["Traceback (most recent call last):", '  File "setup.py", line 40, in <module>', line])
    assert (d.primary.rule, d.primary.detail) == (rule, tool)


@pytest.mark.parametrize(
    ("line", "category", "capability"),
    [
        ("  Could NOT find SWIG (missing: SWIG_EXECUTABLE SWIG_DIR)", "missing-build-tool", "tool:swig"),
        ("  Could NOT find Git (missing: GIT_EXECUTABLE)", "missing-build-tool", "tool:git"),
        ("  Could NOT find ZLIB (missing: ZLIB_LIBRARY ZLIB_INCLUDE_DIR)", "missing-library-header", "lib:zlib"),
        ("  Could NOT find PkgConfig (missing: PKG_CONFIG_EXECUTABLE)", "missing-config-tool", "tool:pkg-config"),
    ],
)
def test_cmake_tells_a_missing_program_from_a_missing_library(line: str, category: str, capability: str) -> None:
    # FindPackageHandleStandardArgs names what it misses: a program's *_EXECUTABLE, or a library's files.
    cmake = "CMake Error at /usr/share/cmake-3.25/Modules/FindPackageHandleStandardArgs.cmake:230 (message):"
    d = diagnose([cmake, line, "Call Stack (most recent call first):"])
    assert (d.primary.category, d.primary.capability, d.primary.line) == (category, capability, 2)


# A program that is not found is said the same way as a file the sdist lacks: it is not one.
PROGRAMS_NOT_FOUND = [
    ("  error: [Errno 2] No such file or directory: 'gcc'", "missing-c-compiler"),
    ("  FileNotFoundError: [Errno 2] No such file or directory: 'gdal-config'", "missing-config-tool"),
    ("    FileNotFoundError: [Errno 2] No such file or directory: 'curl-config': 'curl-config'", "missing-config-tool"),
    ("  FileNotFoundError: [Errno 2] No such file or directory: 'cmake'", None),
]


@pytest.mark.parametrize(("line", "category"), PROGRAMS_NOT_FOUND)
def test_program_not_found_is_not_a_file_missing_from_the_sdist(line: str, category: str | None) -> None:
    d = diagnose([line])
    assert all(c.rule != "sdist-file-missing" for c in d.causes), d.causes
    if category:
        assert d.primary.category == category


# cargo ran but could not get a crate (offline, or the vendored crates lack it): not a
# missing Rust toolchain, although maturin then says "Cargo metadata failed".
CARGO_UNAVAILABLE = {
    "offline": [
        "error: no matching package named `pyo3` found",
        "location searched: registry `crates-io`",
        "required by package `demo v0.1.0 (/tmp/x)`",
    ],
    "directory-source-missing": [
        "error: failed to get `pyo3` as a dependency of package `demo v0.1.0 (/work/src/demo)`",
        "Caused by:",
        "  failed to load source for dependency `pyo3`",
        "Caused by:",
        "  Unable to update registry `crates-io`",
        "Caused by:",
        "  failed to update replaced source registry `crates-io`",
        "Caused by:",
        "  failed to read root of directory source: /usr/share/cargo/registry",
    ],
    "no-network": [
        "error: failed to download from `https://index.crates.io/config.json`",
        "Caused by:",
        "  [6] Couldn't resolve host name (Could not resolve host: index.crates.io)",
    ],
    "vendored-lacks-crate": [
        "error: no matching package named `itoa` found",
        "location searched: directory source `/usr/share/cargo/registry` (which is replacing registry `crates-io`)",
        "required by package `demo v0.1.0 (/tmp/x)`",
    ],
}


@pytest.mark.parametrize("name", sorted(CARGO_UNAVAILABLE))
def test_cargo_dependency_unavailable_beats_missing_rust(name: str) -> None:
    maturin = [
        "  Checking for Rust toolchain....",
        "  💥 maturin failed",
        "    Caused by: Cargo metadata failed. Does your crate compile with `cargo build`?",
        "    Caused by: `cargo metadata` exited with an error:",
    ]
    log = [maturin[0], *CARGO_UNAVAILABLE[name], *maturin[1:]]
    d = diagnose(log)
    assert d.primary.rule == "cargo-dependency-unavailable", d.primary
    assert d.primary.category == "network-failure"
    assert d.primary.line == 2
    assert all(c.category != "missing-rust" for c in d.causes), d.causes
    text = " ".join(r.text for r in d.primary.remedies)
    assert "WHEELYARD_CARGO_VENDOR_DIR" in text and "crates.io" in text


def test_cargo_dependency_unavailable_names_the_crate() -> None:
    d = diagnose(CARGO_UNAVAILABLE["offline"])
    assert d.primary.detail.startswith("cargo could not get pyo3")
    assert "pyo3" in d.primary.explanation


def test_maturin_generic_cargo_metadata_failure_is_not_missing_rust() -> None:
    d = diagnose(["    Caused by: Cargo metadata failed. Does your crate compile with `cargo build`?"])
    assert d.primary.category != "missing-rust", d.primary


@pytest.mark.parametrize(
    "line",
    [
        "      error: can't find Rust compiler",
        "  Cargo, the Rust package manager, is not installed or is not on PATH.",
        "  /bin/sh: 1: cargo: not found",
        "  error: [Errno 2] No such file or directory: 'cargo'",
        "    Caused by: Cargo metadata failed. Do you have cargo in your PATH?",
    ],
)
def test_missing_rust_is_still_missing_rust(line: str) -> None:
    d = diagnose(["  running build_rust", line])
    assert d.primary.rule == "rust-missing", d.primary


def test_specific_cause_beats_earlier_generic_error() -> None:
    log = [
        "  a.c:10:5: error: unknown type name 'foo_t'",
        "  b.c:1:10: fatal error: ffi.h: No such file or directory",
        "  error: command 'gcc' failed with exit status 1",
    ]
    d = diagnose(log)
    assert d.primary.category == "missing-library-header"
    assert d.primary.line == 2
    assert [c.line for c in d.causes] == [2, 1]


def test_first_of_equal_causes_wins() -> None:
    d = diagnose(["  /bin/sh: 1: mysql_config: not found", "  /bin/sh: 1: krb5-config: not found"])
    assert d.primary.line == 1
    assert d.primary.detail.startswith("mysql_config")


def test_unknown_keeps_best_excerpt() -> None:
    d = diagnose(["step 1", "  RuntimeError: the frobnicator is out of flux", "step 3"])
    assert d.primary.category == "unknown"
    assert d.primary.line == 2
    assert not d.diagnosed
    assert "frobnicator" in d.primary.excerpt


def test_empty_log() -> None:
    d = diagnose([])
    assert d.primary.category == "unknown" and d.primary.line == 0


def test_header_table_and_platform_remedy_order() -> None:
    log = [
        "  /tmp/x/c/_cffi_backend.c:15:10: fatal error: 'ffi.h' file not found",
        "  clang -bundle -undefined dynamic_lookup -L/opt/homebrew/lib x.o -o x.so",
    ]
    d = diagnose(log)
    assert d.platform == "macos" and d.platform_source == "log"
    assert d.primary.remedies[0].platform == "macos"
    assert d.primary.remedies[0].text.startswith("brew install libffi")
    assert d.primary.capability == "lib:libffi"
    forced = diagnose(log, platform="fedora")
    assert forced.primary.remedies[0].text == "sudo dnf install libffi-devel"


def test_unknown_header_falls_back() -> None:
    d = diagnose(["  a.c:1:10: fatal error: frobnicate/frob.h: No such file or directory"])
    assert d.primary.category == "missing-library-header"
    assert d.primary.capability == "header:frobnicate/frob.h"
    assert "apt-file search frobnicate/frob.h" in " ".join(r.text for r in d.primary.remedies)


def test_python_headers_version_from_log() -> None:
    d = diagnose(
        [
            "  x86_64-linux-gnu-gcc -I/usr/include/python3.11 -c a.c -o build/temp.linux-x86_64-cpython-311/a.o",
            "  a.c:1:10: fatal error: Python.h: No such file or directory",
        ]
    )
    assert d.python == "3.11"
    assert d.primary.capability == "headers:cp311"
    assert d.primary.remedies[0].text.startswith("sudo apt-get install python3.11-dev")


def test_windows_platform_detected() -> None:
    d = diagnose(
        [
            "  C:\\Users\\me\\AppData\\Local\\Temp\\pip-build\\x.c(3): fatal error C1083: "
            "Cannot open include file: 'zlib.h': No such file or directory"
        ]
    )
    assert d.platform == "windows"
    assert d.primary.remedies[0].platform == "windows"


def test_package_version_and_rerun_advice() -> None:
    log = [
        "Collecting markupsafe==2.1.5",
        "  Downloading MarkupSafe-2.1.5.tar.gz (19 kB)",
        "Building wheels for collected packages: markupsafe",
        "  Building wheel for markupsafe (pyproject.toml): started",
        "  src/markupsafe/_speedups.c:1:10: fatal error: Python.h: No such file or directory",
        "  Building wheel for markupsafe (pyproject.toml): finished with status 'error'",
        "  ERROR: Failed building wheel for markupsafe",
    ]
    d = diagnose(log)
    assert d.package == "markupsafe" and d.version == "2.1.5"
    assert d.advice[-1] == "Re-run to confirm: python -m pip install --no-cache-dir -v markupsafe==2.1.5"
    assert any("from source" in a for a in d.advice)


def test_uv_names_the_package_it_failed_to_build() -> None:
    # uv says the requirement once, in backticks, on its last line (own-057 is such a real log).
    log = [
        "Resolved 1 package in 310ms",
        "   Building grpcio==1.43.0",
        "  × Failed to build `grpcio==1.43.0`",
        "  ├─▶ The build backend returned an error",
        "      src/core/lib/a.c:1:10: fatal error: Python.h: No such file or directory",
    ]
    d = diagnose(log)
    assert (d.package, d.version) == ("grpcio", "1.43.0")
    assert d.advice[-1].endswith(" grpcio==1.43.0")
    path = diagnose(["error: Failed to build `./vendored/thing-1.0.tar.gz`", "fatal error: ffi.h: No such file"])
    assert path.package is None  # a path in the backticks is not a name


def test_wheel_lookup_finds_fitting_wheel() -> None:
    log = [
        "Collecting markupsafe==2.1.5",
        "  Downloading MarkupSafe-2.1.5.tar.gz (19 kB)",
        "  Building wheel for markupsafe (pyproject.toml): started",
        "  gcc -I/usr/include/python3.12 -c src/markupsafe/_speedups.c -o build/temp.linux-"
        "x86_64-cpython-312/_speedups.o",
        "  src/markupsafe/_speedups.c:1:10: fatal error: Python.h: No such file or directory",
    ]
    calls: list[tuple[str, str]] = []

    def lookup(name: str, version: str) -> list[str]:
        calls.append((name, version))
        return [
            "MarkupSafe-2.1.5-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
            "MarkupSafe-2.1.5-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
            "MarkupSafe-2.1.5-cp312-cp312-win_amd64.whl",
        ]

    d = diagnose(log, wheel_lookup=lookup)
    assert calls == [("markupsafe", "2.1.5")]
    text = " ".join(d.advice)
    assert "cp312-cp312-manylinux_2_17_x86_64" in text
    assert "upgrade pip" in text


def test_wheel_lookup_errors_do_not_break_diagnosis() -> None:
    def lookup(name: str, version: str) -> list[str]:
        raise OSError("offline")

    log = [
        "  Downloading foo-1.0.tar.gz (1 kB)",
        "  Building wheel for foo (setup.py): started",
        "  a.c:1:10: fatal error: Python.h: No such file or directory",
    ]
    d = diagnose(log, wheel_lookup=lookup)
    assert d.primary.category == "missing-python-headers"
    assert any("Could not ask upstream" in a for a in d.advice)


def test_fitting_wheels() -> None:
    files = ["x-1-cp310-cp310-macosx_11_0_arm64.whl", "x-1-py3-none-any.whl", "not a wheel"]
    assert fitting_wheels(files, "3.12", "linux", "x86_64") == ["x-1-py3-none-any.whl"]
    assert fitting_wheels(files[:1], "3.10", "macos", "arm64") == files[:1]


def test_causes_are_capped_and_deduplicated() -> None:
    log = [f"  f{i}.c:1:1: error: thing {i} went wrong" for i in range(500)]
    log.append("  z.c:1:10: fatal error: ffi.h: No such file or directory")
    log += ["  a.c:1:10: fatal error: ffi.h: No such file or directory"] * 20
    d = diagnose(log)
    assert d.primary.category == "missing-library-header" and d.primary.line == 501
    assert len(d.causes) <= 50
    assert sum(c.rule == "header-missing" for c in d.causes) == 1


def test_excerpt_crosses_block_boundaries() -> None:
    from builder.diagnosis import engine

    n = engine.BLOCK_LINES
    log = [f"line {i}" for i in range(1, n)] + [
        "  a.c:1:10: fatal error: ffi.h: No such file or directory",  # line n: last of block 1
        "     1 | #include <ffi.h>",
        "       |          ^~~~~~~",
    ]
    d = diagnose(log)
    assert d.primary.line == n
    assert d.primary.excerpt_start == n - 2
    assert d.primary.excerpt.split("\n") == [f"line {n - 2}", f"line {n - 1}", *log[n - 1 :]]


def test_stream_and_lines_agree(tmp_path: Path) -> None:
    text = "a\r\nb\r\n  x.c:1:10: fatal error: ffi.h: No such file or directory\r\nc\r\n"
    d1 = diagnose_stream(io.BytesIO(text.encode()))
    d2 = diagnose(io.StringIO(text))
    assert d1.primary.line == d2.primary.line == 3
    assert d1.primary.text == d2.primary.text == "  x.c:1:10: fatal error: ffi.h: No such file or directory"


def test_huge_line_is_bounded() -> None:
    from builder.diagnosis import engine

    blob = b"x" * (engine.MAX_CARRY * 3) + b"\n"
    data = blob + b"  a.c:1:10: fatal error: ffi.h: No such file or directory\n"
    d = diagnose_stream(io.BytesIO(data))
    assert d.primary.line == 2


def test_ruleset_version() -> None:
    assert re.fullmatch(r"[0-9a-f]{12}", RULESET_VERSION)
    assert load_rules() is load_rules()
    assert load_rules().version == RULESET_VERSION


def test_categories_in_rules_are_known() -> None:
    assert {r.category for r in load_rules().rules} <= set(CATEGORIES)


def test_unknown_platform_rejected() -> None:
    with pytest.raises(ValueError):
        diagnose([], platform="beos")


# -- validation -----------------------------------------------------------------------

GOOD = """
schema = 1
[[rule]]
id = "x-rule"
category = "compile-error"
keywords = ["boom"]
patterns = ['boom (?P<what>\\w+)']
explanation = "It went boom: {what}."
capability = ""
[rule.remedies]
any = "Do not {what}."
"""


def test_minimal_rules_parse() -> None:
    rs = parse_rules(GOOD)
    assert rs.rules[0].id == "x-rule"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda s: s.replace('category = "compile-error"', 'category = "oops"'),
            "unknown category",
        ),
        (lambda s: s.replace("'boom (?P<what>\\w+)'", "'boom ((?P<what>\\w+)'"), "bad regex"),
        (
            lambda s: s.replace('explanation = "It went boom: {what}."\n', ""),
            "missing field 'explanation'",
        ),
        (lambda s: s.replace('keywords = ["boom"]\n', ""), "missing field 'keywords'"),
        (lambda s: s + s[s.index("[[rule]]") :], "duplicate rule id"),
        (lambda s: s.replace("{what}.", "{where}."), "which not every pattern captures"),
        (lambda s: s.replace('any = "', 'beos = "'), "unknown platform"),
        (lambda s: s.replace('id = "x-rule"', 'id = "X Rule"'), "'id' must be"),
        (
            lambda s: s.replace('keywords = ["boom"]\n', 'keywords = ["boom"]\nonly_with = ["no-such-rule"]\n'),
            "'only_with' names no rule",
        ),
        (
            lambda s: s.replace('keywords = ["boom"]\n', 'keywords = ["boom"]\nsteps = ["Prove Step"]\n'),
            "'steps' must be",
        ),
        (lambda s: s.replace("schema = 1", "schema = 2"), "schema = 1"),
        (
            lambda s: s.replace('capability = ""', 'capability = ""\ncolour = "red"'),
            "unknown field",
        ),
        (lambda s: s.replace('keywords = ["boom"]', "keywords = []"), "must not be empty"),
        (lambda s: s + "\n[[rule]]\nid = ", "not valid TOML"),
        (lambda s: s.replace('capability = ""', 'capability = ""\npriority = 500'), "priority"),
        (lambda s: s.replace('capability = ""', 'capability = ""\nin_build = "yes"'), "'in_build' must be"),
    ],
)
def test_validation_rejects(change: object, message: str) -> None:
    assert callable(change)
    with pytest.raises(RuleSetError, match=re.escape(message)):
        parse_rules(change(GOOD))


def test_library_validation() -> None:
    bad = GOOD + '\n[[library]]\nname = "z"\nheaders = ["z.h"]\ndebian = "zlib1g-dev"\n'
    with pytest.raises(RuleSetError, match="missing package name"):
        parse_rules(bad)


def test_shipped_rules_text_is_the_package_file() -> None:
    path = Path(__file__).resolve().parents[1] / "builder" / "diagnosis" / "rules.toml"
    assert rules_text() == path.read_text("utf-8")


def test_a_crate_cargo_could_not_fetch_keeps_the_sdist_advice() -> None:
    """pip got the sdist; the fetch that failed was cargo's, inside the build."""
    log = [
        "Collecting rusty==0.1.0",
        "  Downloading rusty-0.1.0.tar.gz (4 kB)",
        "  Building wheel for rusty (pyproject.toml): started",
        "  error: no matching package named `pyo3` found",
        "  location searched: registry `crates-io`",
        "  Building wheel for rusty (pyproject.toml): finished with status 'error'",
    ]
    d = diagnose(log, wheel_lookup=lambda name, version: ["rusty-0.1.0-cp312-cp312-win_amd64.whl"])
    assert d.primary is not None and d.primary.rule == "cargo-dependency-unavailable"
    assert any("pip built rusty from source" in a for a in d.advice)
    assert any("none for this interpreter/platform" in a for a in d.advice)


def test_pip_failing_to_fetch_the_package_gets_no_sdist_advice() -> None:
    log = [
        "Collecting rusty==0.1.0",
        "  Downloading rusty-0.1.0.tar.gz (4 kB)",
        "WARNING: Retrying (Retry(total=4, connect=None, read=None, redirect=None, status=None)) after connection "
        "broken by 'NewConnectionError('<pip._vendor.urllib3.connection.HTTPSConnection object>: Failed to "
        "establish a new connection: [Errno -3] Temporary failure in name resolution')': /simple/rusty/",
    ]
    d = diagnose(log)
    assert d.primary is not None and d.primary.category == "network-failure"
    assert not any("from source" in a for a in d.advice)


@pytest.mark.parametrize(
    ("line", "capability"),
    [
        ("    CMake 3.26 or higher is required.  You are running version 3.25.1", "tool:cmake>=3.26"),
        ("  ../../meson.build:1:0: ERROR: Meson version is 0.64.1 but project requires >= 1.1.0", "tool:meson>=1.1.0"),
        ("  meson.build:2:0: ERROR: Meson version is 1.0.1 but project requires >=1.2.1", "tool:meson>=1.2.1"),
        (
            "  scikit_build_core.errors.CMakeNotFoundError: Could not find CMake with version >=3.28",
            "tool:cmake>=3.28",
        ),
        (
            "  meson-python: error: Could not find meson version 0.63.3 or newer, found 0.62.2.",
            "tool:meson>=0.63.3",
        ),
    ],
)
def test_a_build_tool_too_old_names_the_tool_and_its_bound(line: str, capability: str) -> None:
    d = diagnose([line])
    assert (d.primary.rule, d.primary.capability) == ("build-tool-too-old", capability)


@pytest.mark.parametrize(
    ("line", "rule"),
    [
        ("  Exception: Unable to find javac", "tool-missing-prose"),
        ("  RuntimeError: Could not find nvcc.", "tool-missing-prose"),
        ("  error: cannot find 'node'", "tool-missing-prose"),
        # a library, a compiler, a config tool, MSVC, a warning that goes on: not this rule
        ("  OSError: Could not find libgeos_c", "unknown"),
        ("  RuntimeError: Could not find gcc", "c-compiler-missing"),  # the C compiler's own rule
        ("  Exception: Could not find pg_config", "config-tool-missing"),
        ("  error: Unable to find vcvarsall.bat", "msvc-missing"),
        ("  Unable to find pgen, not compiling formal grammar.", "unknown"),
        ("  ERROR: Could not find python3.11", "unknown"),
    ],
)
def test_a_program_named_alone_in_a_build_error(line: str, rule: str) -> None:
    assert diagnose([line]).primary.rule == rule
