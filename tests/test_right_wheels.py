"""Right wheels, through the real service: a real worker compiles real sdists with the real
compiler, and the proof neither passes a broken wheel nor refuses a good one.

The sdists are made here (conftest make_sdist): each is the smallest real setuptools project
that has the layout or the failure at stake, and is served to the worker by a local upstream
index that sends every other project (setuptools) to PyPI.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import Stack, make_sdist, pip_install_from_index, upstream_index

pytestmark = pytest.mark.slow

TARGET = "cp312-manylinux_x86_64"
PYPROJECT = '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'

# setuptools writes the extension's own name (`_speedups`) into top_level.txt when it is declared
# with ext_package, though the module lives at wyinner/_speedups.*.so: `import _speedups` fails.
EXTENSION_IN_PACKAGE = {
    "pyproject.toml": PYPROJECT,
    "setup.py": """
import os
from setuptools import Extension, setup
names = ("MAKEFLAGS", "CMAKE_BUILD_PARALLEL_LEVEL", "NPY_NUM_BUILD_JOBS", "CARGO_BUILD_JOBS")
jobs = [os.environ.get(v) for v in names]
print("WY-JOBS", *jobs)
setup(name="wyinner", version="1.0", packages=["wyinner", "wyinner.tests"], ext_package="wyinner",
      ext_modules=[Extension("_speedups", ["src/speedups.c"]), Extension("tests._helper", ["src/helper.c"])])
""",
    # A test package that needs a test-only requirement, with an extension of its own (as greenlet's):
    # the extension is loaded from its file, the package above it is not run.
    "wyinner/tests/__init__.py": "import wyinner_test_only_requirement\n",
    "src/helper.c": """
#include <Python.h>
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "_helper", NULL, -1, NULL};
PyMODINIT_FUNC PyInit__helper(void) { return PyModule_Create(&mod); }
""",
    "wyinner/__init__.py": "from wyinner._speedups import answer\n",
    "src/speedups.c": """
#include <Python.h>
static PyObject *answer(PyObject *self, PyObject *args) { return PyLong_FromLong(42); }
static PyMethodDef methods[] = {{"answer", answer, METH_NOARGS, ""}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "_speedups", NULL, -1, methods};
PyMODINIT_FUNC PyInit__speedups(void) { return PyModule_Create(&mod); }
""",
}

# A pkgutil-style namespace (as zope.*, jaraco.* ship) whose package imports `imp`, gone in 3.12:
# importing the namespace alone works; importing its package does not.
NAMESPACE_BROKEN = {
    "pyproject.toml": PYPROJECT,
    "setup.py": """
from setuptools import setup
setup(name="wyns.broken", version="1.0", packages=["wyns", "wyns.broken"])
""",
    "wyns/__init__.py": "__path__ = __import__('pkgutil').extend_path(__path__, __name__)\n",
    "wyns/broken/__init__.py": "import imp\n",
}

# The extension fails to compile and setup.py's build_ext swallows it, as many do to fall back to
# pure Python: the wheel is platform-tagged but holds no compiled module.
FALLS_BACK = {
    "pyproject.toml": PYPROJECT,
    "setup.py": """
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

class optional_build_ext(build_ext):
    def run(self):
        try:
            build_ext.run(self)
        except Exception as exc:
            print("WARNING: the C extension could not be compiled, speedups are not enabled:", exc)

setup(name="wyhollow", version="1.0", packages=["wyhollow"], cmdclass={"build_ext": optional_build_ext},
      ext_modules=[Extension("wyhollow._speedups", ["src/speedups.c"])])
""",
    "wyhollow/__init__.py": "try:\n    from wyhollow._speedups import answer\nexcept ImportError:\n    answer = None\n",
    "src/speedups.c": "#include <Python.h>\n#include <wyhollow_missing_dependency.h>\n",
}

# An extension the package loads only when asked (its __init__ does not import it) that needs a
# C-API function this interpreter does not have: only importing every compiled module finds it.
LAZY_UNLOADABLE = {
    "pyproject.toml": PYPROJECT,
    "setup.py": """
from setuptools import Extension, setup
setup(name="wylazy", version="1.0", packages=["wylazy"],
      ext_modules=[Extension("wylazy._native", ["src/native.c"])])
""",
    "wylazy/__init__.py": "def native():\n    from wylazy import _native\n    return _native\n",
    "src/native.c": """
#include <Python.h>
extern PyObject *_PyWheelyard_RemovedInThisPython(void);
static PyObject *call(PyObject *self, PyObject *args) { return _PyWheelyard_RemovedInThisPython(); }
static PyMethodDef methods[] = {{"call", call, METH_NOARGS, ""}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "_native", NULL, -1, methods};
PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&mod); }
""",
}

# Prints 40 MiB in the hook that builds the wheel (compiler warnings of a big numeric build), then builds.
PRINTS_40_MIB = {
    "pyproject.toml": PYPROJECT,
    "setup.py": """
import sys
from setuptools import setup
if "bdist_wheel" in sys.argv:
    print("WY-HEAD-MARK")
    line = "warning: " + "x" * 1014 + "\\n"
    for _ in range(40 * 1024):
        sys.stdout.write(line)
    print("WY-TAIL-MARK", flush=True)
setup(name="wyloud", version="1.0", py_modules=["wyloud"])
""",
    "wyloud.py": "LOUD = True\n",
}

PRINTS_FOREVER = {
    "pyproject.toml": PYPROJECT,
    "setup.py": "import sys\nwhile True:\n    sys.stdout.write('y' * 1023 + '\\n')\n",
}

SDISTS = {
    "wyinner": EXTENSION_IN_PACKAGE,
    "wyns.broken": NAMESPACE_BROKEN,
    "wyhollow": FALLS_BACK,
    "wylazy": LAZY_UNLOADABLE,
    "wyloud": PRINTS_40_MIB,
    "wyforever": PRINTS_FOREVER,
}
LOG_HARD_CAP = 64 * 1024**2


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The test's sdists on a local index that sends every other project to PyPI."""
    root = tmp_path_factory.mktemp("upstream")
    packages = root / "packages"
    for name, files in SDISTS.items():
        make_sdist(root / "src", name, "1.0", files, packages)
    with upstream_index(packages) as url:
        yield url


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str, upstream: str) -> Iterator[Stack]:
    s = Stack(
        tmp_path_factory.mktemp("right-wheels"),
        redis_url,
        WHEELYARD_UPSTREAM_INDEX=upstream,
        WHEELYARD_BUILD_LOG_BYTES=str(LOG_HARD_CAP),
        WHEELYARD_BUILD_JOBS="3",
    )
    s.start_index_and_api()
    s.start_worker("worker-right", f"{TARGET},py3-none-any")
    yield s
    s.stop_all()


def build(stack: Stack, requirement: str, target: str = TARGET) -> dict[str, Any]:
    response = stack.request(requirement, [target], from_source=True)
    assert response.status_code == 202, response.text
    return stack.wait_done(response.json()["builds"][0]["id"], timeout=300)


def log_of(stack: Stack, build_id: str) -> str:
    return requests.get(f"{stack.api}/api/builds/{build_id}/log", timeout=60).text


def test_extension_inside_its_package_named_bare_in_top_level_txt_publishes(stack: Stack, tmp_path: Path) -> None:
    done = build(stack, "wyinner==1.0")
    assert done["status"] == "published", (done, log_of(stack, done["id"]))
    log = log_of(stack, done["id"])
    assert "top_level.txt names '_speedups', which the wheel does not hold" in log
    assert "wheelyard: proof: imported wyinner._speedups" in log
    assert "wheelyard: proof: imported wyinner.tests._helper" in log
    # The build is told how many jobs it may run (WHEELYARD_BUILD_JOBS here).
    assert "WY-JOBS -j3 3 3 3" in log
    python, _ = pip_install_from_index(stack.simple, "3.12", tmp_path, "wyinner==1.0")
    out = subprocess.run([str(python), "-c", "import wyinner; print(wyinner.answer())"], capture_output=True, text=True)
    assert out.stdout.strip() == "42", out.stderr


def test_namespace_package_whose_package_fails_to_import_is_refused_and_named(stack: Stack) -> None:
    done = build(stack, "wyns.broken==1.0")
    assert done["status"] == "failed", done
    assert done["error"]["error"] == "proof-failed", done["error"]
    assert [i["module"] for i in done["error"]["imports"]] == ["wyns.broken"]
    assert "No module named 'imp'" in done["error"]["imports"][0]["error"]
    assert "wyns.broken" in done["error"]["message"]
    log = log_of(stack, done["id"])
    assert "wheelyard: proof: import failed: wyns.broken: ModuleNotFoundError: No module named 'imp'" in log


def test_extension_that_fell_back_to_pure_python_is_refused_as_hollow(stack: Stack) -> None:
    done = build(stack, "wyhollow==1.0")
    assert done["status"] == "failed", done
    error = done["error"]
    assert error["error"] == "hollow-wheel", error
    assert "did not compile" in error["message"] and "fell back to pure Python" in error["message"]
    assert "auditwheel" not in error["message"]
    primary = done["diagnosis"]["primary"]
    # The diagnosis is the compile error that made the wheel hollow, not the refusal.
    assert "wyhollow_missing_dependency.h" in primary["text"], primary


def test_lazily_loaded_extension_that_cannot_load_on_the_target_is_refused(stack: Stack) -> None:
    done = build(stack, "wylazy==1.0")
    assert done["status"] == "failed", done
    assert done["error"]["error"] == "proof-failed", done["error"]
    failing = {i["module"]: i["error"] for i in done["error"]["imports"]}
    assert list(failing) == ["wylazy._native"], failing
    assert "undefined symbol: _PyWheelyard_RemovedInThisPython" in failing["wylazy._native"]
    log = log_of(stack, done["id"])
    assert "undefined symbol: _PyWheelyard_RemovedInThisPython" in log
    # Said why: the interpreter is too new for the release, with the symbol as detail.
    primary = done["diagnosis"]["primary"]
    assert primary["category"] == "python-version-incompat", primary
    assert "_PyWheelyard_RemovedInThisPython" in str(primary), primary
    assert "wheelyard: proof: imported wylazy\n" in log


def test_a_build_that_prints_40_mib_publishes_and_its_record_keeps_head_marker_and_tail(stack: Stack) -> None:
    done = build(stack, "wyloud==1.0", target="py3-none-any")
    assert done["status"] == "published", done
    stored = log_of(stack, done["id"])
    assert len(stored.encode()) < 17 * 1024**2
    assert stored.index("WY-HEAD-MARK") < stored.index("of output left out here")
    assert stored.count("left out here") == 1
    # The tail is the end of the log: the last lines of the hook's output, and the publication.
    assert stored.index("left out here") < stored.index("WY-TAIL-MARK") < stored.index("wheelyard: published")


def test_a_build_that_prints_without_end_is_killed_at_the_hard_cap(stack: Stack) -> None:
    done = build(stack, "wyforever==1.0", target="py3-none-any")
    assert done["status"] == "failed", done
    assert done["error"]["cause"] == "log-too-large", done["error"]
    assert done["diagnosis"]["primary"]["rule"] == "sandbox-log-size", done["diagnosis"]["primary"]
    stored = log_of(stack, done["id"])
    assert f"wheelyard: build killed: log too large (limit {LOG_HARD_CAP} bytes)" in stored
