"""Make the local corpus: real failed builds on this machine, recorded as logs.

Each case runs a real ``pip`` (isolated from the machine's pip config) against a real
sdist or a tiny local project, in a temporary directory, with one thing the build needs
taken away (a compiler, a config tool, a header, memory, the network, the crates). The combined
stdout+stderr of pip is stored, unchanged, as ``tests/corpus/local/<case>.log``.

Run:  python tests/corpus/make_local_logs.py [CASE ...]      (no CASE: all of them)

The labels in ``tests/corpus/local/labels.json`` are written by hand after reading each
log; this script never writes labels.  See ``tests/corpus/local/HOW.md``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent / "local"
PY = {v: f"/root/.pyenv/versions/{v}/bin/python" for v in ("3.10.13", "3.11.7", "3.12.1", "3.13.0")}
MAX_LINES = 3000  # logs longer than this keep their first 500 and last 2500 lines


def pip_env(path: str | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    if "PIP_CERT" in os.environ:  # the machine's CA bundle, needed to reach the index
        env["PIP_CERT"] = os.environ["PIP_CERT"]
    env["LC_ALL"] = "C.UTF-8"
    if path is not None:
        env["PATH"] = path
    env.update(extra)
    return env


def shadow_bin(tmp: Path, hide: set[str]) -> str:
    """A PATH of one directory holding a symlink to every /usr/bin tool except ``hide``."""
    d = tmp / "bin"
    d.mkdir()
    for p in Path("/usr/bin").iterdir():
        if p.name not in hide:
            (d / p.name).symlink_to(p)
    return str(d)


def run(name: str, argv: list[str], env: dict[str, str], cwd: Path) -> None:
    print(f"[{name}] $ {' '.join(argv)}", flush=True)
    proc = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=900)
    text = proc.stdout.decode("utf-8", "replace")
    lines = text.splitlines(keepends=True)
    if len(lines) > MAX_LINES:
        lines = lines[:500] + lines[-(MAX_LINES - 500) :]
        print(f"[{name}] trimmed to {MAX_LINES} lines")
    (HERE / f"{name}.log").write_text("".join(lines), encoding="utf-8")
    print(f"[{name}] exit {proc.returncode}, {len(lines)} lines", flush=True)


def c_project(root: Path, name: str = "tinyext", source: str = "", cpp: bool = False) -> Path:
    proj = root / name
    (proj / "src").mkdir(parents=True)
    ext = "cpp" if cpp else "c"
    src = source or textwrap.dedent(
        f"""\
        #include <Python.h>
        static struct PyModuleDef m = {{PyModuleDef_HEAD_INIT, "{name}", NULL, -1, NULL}};
        PyMODINIT_FUNC PyInit_{name}(void) {{ return PyModule_Create(&m); }}
        """
    )
    (proj / "src" / f"{name}.{ext}").write_text(src)
    (proj / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n'
        f'[project]\nname = "{name}"\nversion = "0.1"\n'
    )
    lang = ', language="c++"' if cpp else ""
    (proj / "setup.py").write_text(
        "from setuptools import Extension, setup\n"
        f'setup(ext_modules=[Extension("{name}", ["src/{name}.{ext}"]{lang})])\n'
    )
    return proj


def pip(py: str, *args: str) -> list[str]:
    return [PY[py], "-m", "pip", *args, "--no-cache-dir"]


# -- cases -------------------------------------------------------------------------


def case_no_cc(tmp: Path) -> None:
    """C extension with CC naming a gcc that does not exist."""
    proj = c_project(tmp)
    run(
        "local-001",
        pip("3.12.1", "wheel", "-v", "--no-deps", "-w", "out", str(proj)),
        pip_env(CC="/usr/local/nonexistent/gcc"),
        tmp,
    )


def case_no_python_headers(tmp: Path) -> None:
    """A copy of the 3.11 interpreter whose include/ directory was removed (see HOW.md)."""
    copy = tmp / "py311"
    shutil.copytree("/root/.pyenv/versions/3.11.7", copy, symlinks=True)
    shutil.rmtree(copy / "include")
    # Like a distro interpreter without its -dev package: sysconfig still names an include
    # directory (now the copy's), which does not exist.
    for data in (copy / "lib/python3.11").glob("_sysconfigdata_*.py"):
        data.write_text(data.read_text().replace("/root/.pyenv/versions/3.11.7", str(copy)))
    shutil.rmtree(copy / "lib/python3.11/__pycache__", ignore_errors=True)
    proj = c_project(tmp)
    run(
        "local-002",
        [
            str(copy / "bin/python3.11"),
            "-m",
            "pip",
            "wheel",
            "-v",
            "--no-deps",
            "--no-cache-dir",
            "-w",
            "out",
            str(proj),
        ],
        pip_env(),
        tmp,
    )


def case_no_cargo(tmp: Path) -> None:
    """A minimal maturin (pyo3) project with ~/.cargo/bin not on PATH."""
    proj = tmp / "rusty"
    (proj / "src").mkdir(parents=True)
    (proj / "Cargo.toml").write_text(
        textwrap.dedent("""\
        [package]
        name = "rusty"
        version = "0.1.0"
        edition = "2021"
        [lib]
        crate-type = ["cdylib"]
        [dependencies]
        pyo3 = { version = "0.22", features = ["extension-module"] }
        """)
    )
    (proj / "src/lib.rs").write_text(
        "use pyo3::prelude::*;\n#[pymodule]\nfn rusty(_m: &Bound<'_, PyModule>) -> PyResult<()> { Ok(()) }\n"
    )
    (proj / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["maturin>=1,<2"]\nbuild-backend = "maturin"\n'
        '[project]\nname = "rusty"\nversion = "0.1.0"\n'
    )
    run(
        "local-003",
        pip("3.11.7", "wheel", "-v", "--no-deps", "-w", "out", str(proj)),
        pip_env(path=shadow_bin(tmp, set())),
        tmp,
    )


def case_no_pg_config(tmp: Path) -> None:
    """The psycopg2 2.9.9 sdist with pg_config hidden from PATH."""
    run(
        "local-004",
        pip("3.11.7", "install", "-v", "--no-binary", ":all:", "--target", "out", "psycopg2==2.9.9"),
        pip_env(path=shadow_bin(tmp, {"pg_config"})),
        tmp,
    )


def case_no_portaudio(tmp: Path) -> None:
    """The PyAudio 0.2.14 sdist; portaudio19-dev is not installed on this machine."""
    run(
        "local-005",
        pip("3.12.1", "install", "-v", "--target", "out", "PyAudio==0.2.14"),
        pip_env(),
        tmp,
    )


def case_old_cython_c(tmp: Path) -> None:
    """yarl 1.8.2's sdist ships C made by an old Cython; Python 3.12 changed PyLongObject."""
    run(
        "local-006",
        pip(
            "3.12.1",
            "install",
            "-v",
            "--no-binary",
            "yarl",
            "--no-deps",
            "--target",
            "out",
            "yarl==1.8.2",
        ),
        pip_env(),
        tmp,
    )


def case_memory_limit(tmp: Path) -> None:
    """A big generated C file compiled under `prlimit --as` (300 MB address space)."""
    body = "\n".join(f"    x = x * {i} + (x >> 3) ^ {i * 7};" for i in range(60000))
    src = (
        "#include <Python.h>\nlong big(long x) {\n" + body + "\n    return x;\n}\n"
        'static struct PyModuleDef m = {PyModuleDef_HEAD_INIT, "bigext", NULL, -1, NULL};\n'
        "PyMODINIT_FUNC PyInit_bigext(void) { return PyModule_Create(&m); }\n"
    )
    proj = c_project(tmp, "bigext", src)
    run(
        "local-007",
        pip("3.12.1", "wheel", "-v", "--no-deps", "-w", "out", str(proj)),
        pip_env(CC="prlimit --as=300000000 gcc", CFLAGS="-O2"),
        tmp,
    )


def case_unreachable_index(tmp: Path) -> None:
    """An sdist whose build dependencies must come from an index that refuses connections."""
    proj = c_project(tmp)
    run(
        "local-008",
        pip(
            "3.12.1",
            "wheel",
            "-v",
            "--no-deps",
            "--retries",
            "1",
            "--timeout",
            "3",
            "--index-url",
            "http://127.0.0.1:9/simple",
            "-w",
            "out",
            str(proj),
        ),
        pip_env(),
        tmp,
    )


def case_no_cxx(tmp: Path) -> None:
    """A C++ extension with g++ and c++ hidden from PATH (gcc itself present)."""
    proj = c_project(
        tmp,
        "cppext",
        textwrap.dedent("""\
        #include <Python.h>
        #include <vector>
        static struct PyModuleDef m = {PyModuleDef_HEAD_INIT, "cppext", NULL, -1, NULL};
        PyMODINIT_FUNC PyInit_cppext(void) { std::vector<int> v(3); return PyModule_Create(&m); }
        """),
        cpp=True,
    )
    path = shadow_bin(tmp, {"g++", "c++", "x86_64-linux-gnu-g++", "g++-12", "x86_64-linux-gnu-g++-12"})
    run(
        "local-009",
        pip("3.12.1", "wheel", "-v", "--no-deps", "-w", "out", str(proj)),
        pip_env(path=path + ":" + str(Path(PY["3.12.1"]).parent)),
        tmp,
    )


def case_no_fortran(tmp: Path) -> None:
    """A meson-python project whose meson.build needs Fortran; gfortran is not installed."""
    proj = tmp / "fort"
    proj.mkdir()
    (proj / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["meson-python>=0.15", "meson>=1.2"]\n'
        'build-backend = "mesonpy"\n[project]\nname = "fort"\nversion = "0.1"\n'
    )
    (proj / "meson.build").write_text(
        "project('fort', 'c', 'fortran')\npy = import('python').find_installation()\n"
        "py.extension_module('fort', 'fort.f90', install: true)\n"
    )
    (proj / "fort.f90").write_text("subroutine hi()\nend subroutine\n")
    run(
        "local-010",
        pip("3.12.1", "wheel", "-v", "--no-deps", "-w", "out", str(proj)),
        pip_env(),
        tmp,
    )


def case_no_ldap_headers(tmp: Path) -> None:
    """The python-ldap 3.4.4 sdist; libldap2-dev/libsasl2-dev are not installed."""
    run(
        "local-011",
        pip("3.12.1", "install", "-v", "--target", "out", "python-ldap==3.4.4"),
        pip_env(),
        tmp,
    )


def case_no_mysql_config(tmp: Path) -> None:
    """The mysqlclient 2.2.4 sdist with no MySQL/MariaDB client development files."""
    run(
        "local-012",
        pip("3.12.1", "install", "-v", "--target", "out", "mysqlclient==2.2.4"),
        pip_env(),
        tmp,
    )


def rust_project(root: Path, name: str, deps: str, backend: str = "maturin") -> Path:
    """A minimal pyo3 project (maturin or setuptools-rust) with the given [dependencies]."""
    proj = root / name
    (proj / "src").mkdir(parents=True)
    (proj / "Cargo.toml").write_text(
        f'[package]\nname = "{name}"\nversion = "0.1.0"\nedition = "2021"\n'
        f'[lib]\ncrate-type = ["cdylib"]\n[dependencies]\n{deps}'
    )
    (proj / "src/lib.rs").write_text(
        f"use pyo3::prelude::*;\n#[pymodule]\nfn {name}(_py: Python, _m: &PyModule) -> PyResult<()> {{ Ok(()) }}\n"
    )
    if backend == "maturin":
        build = '[build-system]\nrequires = ["maturin>=1,<2"]\nbuild-backend = "maturin"\n'
    else:
        build = (
            '[build-system]\nrequires = ["setuptools>=68", "setuptools-rust>=1.9"]\n'
            'build-backend = "setuptools.build_meta"\n'
        )
        (proj / "setup.py").write_text(
            "from setuptools import setup\nfrom setuptools_rust import RustExtension\n"
            f'setup(rust_extensions=[RustExtension("{name}", binding="pyo3")])\n'
        )
    (proj / "pyproject.toml").write_text(build + f'[project]\nname = "{name}"\nversion = "0.1.0"\n')
    return proj


def worker_cargo_home(tmp: Path, vendor_dir: str | None) -> dict[str, str]:
    """cargo's settings as a wheelyard worker gives them to a build (builder/rust_toolchain.py and
    builder/sandbox/environment.py): always offline; with a vendor directory, a directory source replacing
    crates.io, written to $CARGO_HOME/config.toml."""
    home = tmp / "cargo-home"
    home.mkdir()
    if vendor_dir is not None:
        (home / "config.toml").write_text(
            '[source.crates-io]\nreplace-with = "vendored-sources"\n\n'
            f'[source.vendored-sources]\ndirectory = "{vendor_dir}"\n\n'
            "[net]\noffline = true\n"
        )
    return {"CARGO_HOME": str(home), "CARGO_NET_OFFLINE": "true"}


def case_cargo_offline(tmp: Path) -> None:
    """A maturin/pyo3 project built as on a worker with no vendored crates: cargo offline, empty CARGO_HOME."""
    proj = rust_project(tmp, "rusty", 'pyo3 = { version = "0.22", features = ["extension-module"] }\n')
    run(
        "local-013",
        pip("3.11.7", "wheel", "-v", "--no-deps", "-w", "out", str(proj)),
        pip_env(**worker_cargo_home(tmp, None)),
        tmp,
    )


def case_cargo_vendor_lacks_crate(tmp: Path) -> None:
    """As on a worker with WHEELYARD_CARGO_VENDOR_DIR=/usr/share/cargo/registry (Debian's
    librust-*-dev crates): pyo3 0.17 is there, itoa is not."""
    proj = rust_project(tmp, "rusty", 'pyo3 = { version = "0.17", features = ["extension-module"] }\nitoa = "1"\n')
    run(
        "local-014",
        pip("3.11.7", "wheel", "-v", "--no-deps", "-w", "out", str(proj)),
        pip_env(**worker_cargo_home(tmp, "/usr/share/cargo/registry")),
        tmp,
    )


def case_cargo_no_network(tmp: Path) -> None:
    """A setuptools-rust project built by a user's own pip, cargo online: crates.io is unreachable."""
    proj = rust_project(
        tmp, "rusty", 'pyo3 = { version = "0.22", features = ["extension-module"] }\n', "setuptools-rust"
    )
    (tmp / "cargo-home").mkdir()
    run(
        "local-015",
        pip("3.12.1", "wheel", "-v", "--no-deps", "-w", "out", str(proj)),
        pip_env(CARGO_HOME=str(tmp / "cargo-home")),
        tmp,
    )


def case_cargo_vendor_dir_missing(tmp: Path) -> None:
    """As on a worker whose WHEELYARD_CARGO_VENDOR_DIR names a directory that does not exist."""
    proj = rust_project(tmp, "rusty", 'pyo3 = { version = "0.17", features = ["extension-module"] }\n')
    run(
        "local-016",
        pip("3.11.7", "wheel", "-v", "--no-deps", "-w", "out", str(proj)),
        pip_env(**worker_cargo_home(tmp, "/srv/wheelyard/cargo-vendor")),
        tmp,
    )


def case_source_file_missing(tmp: Path) -> None:
    """A C extension whose setup.py names a source file its sdist does not ship."""
    proj = c_project(tmp)
    (proj / "setup.py").write_text(
        "from setuptools import Extension, setup\n"
        'setup(ext_modules=[Extension("tinyext", ["src/tinyext.c", "src/speedups.c"])])\n'
    )
    run("local-017", pip("3.12.1", "wheel", "-v", "--no-deps", "-w", "out", str(proj)), pip_env(), tmp)


def case_build_no_isolation_missing(tmp: Path, setuptools: bool = False, name: str = "local-018") -> None:
    """``python -m build --no-isolation`` in a venv that lacks the project's build requirements
    (even setuptools, its backend; or, with ``setuptools``, only the others)."""
    proj = c_project(tmp)
    (proj / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=68", "cython>=3", "numpy>=2"]\n'
        'build-backend = "setuptools.build_meta"\n[project]\nname = "tinyext"\nversion = "0.1"\n'
    )
    venv = tmp / "venv"
    subprocess.run([PY["3.12.1"], "-m", "venv", str(venv)], check=True)
    tools = ["build", "setuptools"] if setuptools else ["build"]
    subprocess.run([str(venv / "bin/python"), "-m", "pip", "install", "-q", *tools], env=pip_env(), check=True)
    run(name, [str(venv / "bin/python"), "-m", "build", "--no-isolation", "--wheel", str(proj)], pip_env(), tmp)


def case_no_pkg_config(tmp: Path) -> None:
    """pycairo 1.20.1 (its setup.py runs pkg-config) with pkg-config hidden from PATH."""
    path = shadow_bin(tmp, {"pkg-config", "x86_64-linux-gnu-pkg-config", "pkgconf"})
    run(
        "local-019",
        pip("3.11.7", "wheel", "-v", "--no-deps", "--no-binary", "pycairo", "-w", "out", "pycairo==1.20.1"),
        pip_env(path=f"/usr/local/bin:{path}"),
        tmp,
    )


def case_removed_c_api_symbol(tmp: Path) -> None:
    """An extension calling ``_PyArg_UnpackStack`` (exported by 3.12, gone from 3.13): it builds on
    3.13 (gcc 12 only warns about the implicit declaration) and fails when it is imported."""
    src = textwrap.dedent(
        """\
        #include <Python.h>
        static PyObject *pair(PyObject *self, PyObject *const *args, Py_ssize_t n) {
            PyObject *a, *b;
            if (!_PyArg_UnpackStack(args, n, "pair", 2, 2, &a, &b)) return NULL;
            return PyTuple_Pack(2, a, b);
        }
        static PyMethodDef methods[] = {{"pair", (PyCFunction)(void (*)(void))pair, METH_FASTCALL, NULL},
                                        {NULL, NULL, 0, NULL}};
        static struct PyModuleDef m = {PyModuleDef_HEAD_INIT, "tinyext", NULL, -1, methods};
        PyMODINIT_FUNC PyInit_tinyext(void) { return PyModule_Create(&m); }
        """
    )
    proj = c_project(tmp, source=src)
    py = PY["3.13.0"]
    script = (
        f"{py} -m venv venv && venv/bin/python -m pip install -v --no-cache-dir {proj} "
        "&& cd / && " + str(tmp / "venv/bin/python") + " -c 'import tinyext'"
    )
    run("local-020", ["bash", "-c", script], pip_env(), tmp)


CASES: dict[str, Callable[[Path], None]] = {
    "local-001": case_no_cc,
    "local-002": case_no_python_headers,
    "local-003": case_no_cargo,
    "local-004": case_no_pg_config,
    "local-005": case_no_portaudio,
    "local-006": case_old_cython_c,
    "local-007": case_memory_limit,
    "local-008": case_unreachable_index,
    "local-009": case_no_cxx,
    "local-010": case_no_fortran,
    "local-011": case_no_ldap_headers,
    "local-012": case_no_mysql_config,
    "local-013": case_cargo_offline,
    "local-014": case_cargo_vendor_lacks_crate,
    "local-015": case_cargo_no_network,
    "local-016": case_cargo_vendor_dir_missing,
    "local-017": case_source_file_missing,
    "local-018": case_build_no_isolation_missing,
    "local-019": case_no_pkg_config,
    "local-020": case_removed_c_api_symbol,
    "local-021": lambda tmp: case_build_no_isolation_missing(tmp, setuptools=True, name="local-021"),
}


def main(argv: list[str]) -> int:
    HERE.mkdir(parents=True, exist_ok=True)
    for name in argv or list(CASES):
        with tempfile.TemporaryDirectory(prefix=f"wy-{name}-") as d:
            try:
                CASES[name](Path(d))
            except Exception as exc:  # keep going: one broken case must not stop the rest
                print(f"[{name}] could not run: {exc!r}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
