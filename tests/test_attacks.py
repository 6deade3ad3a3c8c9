"""A hostile package author against the whole service: each attack is a real sdist on a local
upstream index, built by a real root worker through the API, and each test asserts that it is
contained: nothing ran outside the sandbox, the record ends with the right cause (or, where the
attack only tries to substitute what is published, the verified wheel is published), no secret is
in any log or response, every file on the index is the one its record and the index list, and
the worker goes on to the next build.

The stack, the upstream index and the worker are shared by the module (one worker takes the
attacks one after another, as a real one would).
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import textwrap
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from builder.build_output import BuildLog
from builder.config import Settings
from builder.installs import installer_sandbox, uv_binary
from builder.pipeline import work_directory
from builder.publish import publish_wheel, published_sha256
from tests.conftest import REDIS_SERVER, RedisDatabases, Stack, interpreter, make_sdist, upstream_index
from tests.test_verify import make_wheel

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the attacks are against a root worker"),
]

TARGET = "cp312-manylinux_x86_64"
VERSION = "0.1.0"

IN_TREE_BACKEND = """
[build-system]
requires = {requires}
build-backend = "backend"
backend-path = ["."]
"""

# A tiny backend whose get_requires_for_build_wheel returns what the test says, and which builds
# a real pure wheel (so that a build it lets through is visible as published).
BACKEND = """
import base64, hashlib, os, zipfile

NAME, VERSION = {name!r}, {version!r}
EXTRA = {extra!r}


def get_requires_for_build_wheel(config_settings=None):
    return EXTRA


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    dist = NAME.replace("-", "_")
    info = f"{{dist}}-{{VERSION}}.dist-info"
    files = {{
        dist + "_mod.py": b"VALUE = 1\\n",
        info + "/METADATA": f"Metadata-Version: 2.1\\nName: {{NAME}}\\nVersion: {{VERSION}}\\n".encode(),
        info + "/WHEEL": b"Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
    }}
    record = ""
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record += f"{{path}},sha256={{digest}},{{len(data)}}\\n"
    record += f"{{dist}}-{{VERSION}}.dist-info/RECORD,,\\n"
    files[f"{{dist}}-{{VERSION}}.dist-info/RECORD"] = record.encode()
    name = f"{{dist}}-{{VERSION}}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return name
"""

SETUPTOOLS_PYPROJECT = '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'

C_EXTENSION = """
#define PY_SSIZE_T_CLEAN
#include <Python.h>
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "_ext", NULL, -1, NULL};
PyMODINIT_FUNC PyInit__ext(void) { return PyModule_Create(&mod); }
"""


def extension_project(name: str, package: str, setup_body: str = "", init: str = "") -> dict[str, str]:
    """A setuptools project with a C extension (so auditwheel repairs it), ``setup_body`` run by
    setup.py first (in the build hooks), ``init`` run when the package is imported (in the proof)."""
    return {
        "pyproject.toml": SETUPTOOLS_PYPROJECT,
        "setup.py": f"{setup_body}\nfrom setuptools import Extension, setup\n"
        f"setup(name={name!r}, version={VERSION!r}, packages=[{package!r}],\n"
        f"      ext_modules=[Extension({package + '._ext'!r}, [{package + '/_ext.c'!r}])])\n",
        f"{package}/__init__.py": init or "VALUE = 1\n",
        f"{package}/_ext.c": C_EXTENSION,
    }


@dataclass
class Attacks:
    stack: Stack
    packages: Path
    root: Path
    markers: Path
    published: dict[str, str] = field(default_factory=dict)  # wheel filename -> sha256 of its record

    @property
    def secrets(self) -> list[str]:
        return [self.stack.password]

    def build(self, name: str, files: dict[str, str] | None = None, archive: Path | None = None) -> dict[str, Any]:
        if archive is None:
            assert files is not None
            make_sdist(self.root / "src", name, VERSION, files, self.packages)
        response = self.stack.request(f"{name}=={VERSION}", [TARGET])
        assert response.status_code == 202, response.text
        self.check_no_secret(response.text)
        done = self.stack.wait_done(response.json()["builds"][0]["id"], timeout=300)
        if done["status"] == "published":
            self.published[done["wheel"]] = done["sha256"]
        return done

    def wheel_files(self) -> list[Path]:
        return sorted((self.stack.data_dir / "wheels").rglob("*.whl"))

    def log(self, build: dict[str, Any]) -> str:
        response = requests.get(f"{self.stack.api}/api/builds/{build['id']}/log", timeout=30)
        response.raise_for_status()
        return response.text

    def check_no_secret(self, text: str) -> None:
        for secret in self.secrets:
            assert secret not in text

    def check_contained(self, build: dict[str, Any]) -> str:
        """What every attack must leave true; returns the build's log."""
        log = self.log(build)
        record = requests.get(f"{self.stack.api}/api/builds/{build['id']}", timeout=30).text
        listing = requests.get(f"{self.stack.api}/api/builds", timeout=30).text
        for text in (log, record, listing, self.stack.log("worker-attacks"), self.stack.log("api")):
            self.check_no_secret(text)
        # Nothing of the build ran outside the sandbox (the markers are host paths a sandboxed
        # process cannot write).
        assert sorted(p.name for p in self.markers.iterdir()) == []
        # Every file on the index is the verified one: its bytes, the index's hash and the hash of
        # the build record that published it agree.
        on_disk = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in self.wheel_files()}
        for filename, sha in on_disk.items():
            assert published_sha256(filename, index_url=f"http://127.0.0.1:{self.stack.index_port}") == sha
        for filename, sha in self.published.items():
            assert on_disk.get(filename) == sha, (filename, on_disk)
        assert self.stack.procs["worker-attacks"].poll() is None, "the worker died"
        return log


@pytest.fixture(scope="module")
def attacks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Attacks]:
    root = tmp_path_factory.mktemp("attacks")
    packages = root / "upstream"
    packages.mkdir()
    markers = root / "markers"
    markers.mkdir()
    with RedisDatabases(REDIS_SERVER) as databases, upstream_index(packages) as upstream:
        stack = Stack(root / "stack", databases.take(), WHEELYARD_UPSTREAM_INDEX=upstream)
        try:
            stack.start_index_and_api()
            stack.start_worker("worker-attacks", TARGET)
            yield Attacks(stack, packages, root, markers)
        finally:
            stack.stop_all()


def marker_code(markers: Path, what: str) -> str:
    """Python that leaves a marker file when it runs where the test's host paths are writable
    (outside the sandbox)."""
    return (
        f"import os as _o\ntry:\n    open(_o.path.join({str(markers)!r}, {what!r} + '-' + str(_o.getuid())), 'w')\n"
        "except OSError:\n    pass\n"
    )


# --- 1. code execution outside the sandbox ---------------------------------------------------


def test_tool_shadows_written_by_setup_py_never_run(attacks: Attacks) -> None:
    """setup.py plants auditwheel.py, uv, patchelf, python, sitecustomize.py and a .pth in every
    directory the worker's tools might run from or import from; none of them runs, and the wheel
    is repaired by the real auditwheel and published."""
    shadow = marker_code(attacks.markers, "python-shadow")
    script = f"#!/bin/sh\ntouch {attacks.markers}/tool-shadow-$(id -u)\n"
    body = textwrap.dedent(
        f"""
        import os, pathlib, sys
        SHADOWS = {{
            "auditwheel.py": {shadow!r}, "sitecustomize.py": {shadow!r}, "usercustomize.py": {shadow!r},
            "wheelyard_attack.pth": "import os; exec(" + repr({shadow!r}) + ")\\n",
            "uv": {script!r}, "patchelf": {script!r}, "python": {script!r}, "python3": {script!r},
        }}
        src = pathlib.Path.cwd()
        work = src.parent.parent
        places = [src, src.parent, work, work / "worker", work / "shared", work / "home", work / "out",
                  pathlib.Path.home(), pathlib.Path("/tmp"), pathlib.Path(sys.prefix) / "bin",
                  *map(pathlib.Path, sys.path[1:])]
        for place in places:
            for name, text in SHADOWS.items():
                path = place / name
                try:
                    path.write_text(text)
                    path.chmod(0o755)
                    print("planted", path)
                except OSError as exc:
                    print("refused", path, exc.errno)
        """
    )
    project = extension_project("wheelyard-attack-shadow", "shadow_pkg", setup_body=body)
    done = attacks.build("wheelyard-attack-shadow", project)
    log = attacks.check_contained(done)
    assert done["status"] == "published", (done, log)
    assert "manylinux" in done["wheel"]
    planted = re.search(r"^planted (/\S+)/src/[^/\s]+/auditwheel\.py$", log, re.M)
    assert planted, log  # the attempt was made: the sources are the build's
    workdir = planted.group(1)
    assert f"refused {workdir}/auditwheel.py" in log  # workdir is the worker's, read-only
    assert f"refused {workdir}/worker/auditwheel.py" in log


# --- 2. build requirements are data ---------------------------------------------------------


class _CountingHandler(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self.hits.append(self.path)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def url_server() -> Iterator[tuple[str, list[str]]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CountingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _CountingHandler.hits
    server.shutdown()


INJECTIONS = {
    "config-file": ("--config-file={data}/index-password", "build-requirement-refused"),
    "target": ("--target={data}/wheels", "build-requirement-refused"),
    "editable": ("-e .", "build-requirement-refused"),
    "path": ("./", "build-requirement-refused"),
    "absolute-path": ("/etc", "build-requirement-refused"),
    "file-url": ("file:///etc/passwd", "build-requirement-refused"),
    "named-file-url": ("evil @ file:///etc/passwd", "build-requirement-refused"),
    "direct-url": ("evil @ {url}/evil-1.0-py3-none-any.whl", "direct-url-requirement-refused"),
}


@pytest.mark.parametrize("where", ["build-system-requires", "get-requires-for-build-wheel"])
@pytest.mark.parametrize("attack", sorted(INJECTIONS))
def test_requirement_injection_is_refused(
    attacks: Attacks, url_server: tuple[str, list[str]], attack: str, where: str
) -> None:
    url, hits = url_server
    text, reference = INJECTIONS[attack]
    requirement = text.format(data=attacks.stack.data_dir, url=url)
    name = f"wheelyard-inject-{attack}-{where}"[:60].rstrip("-")
    in_requires = where == "build-system-requires"
    project = {
        "pyproject.toml": IN_TREE_BACKEND.format(requires=json.dumps([requirement] if in_requires else [])),
        "backend.py": BACKEND.format(name=name, version=VERSION, extra=[] if in_requires else [requirement]),
    }
    wheels_before = {p.name: p.read_bytes() for p in attacks.wheel_files()}
    done = attacks.build(name, project)
    log = attacks.check_contained(done)
    assert done["status"] == "failed", (done, log)
    assert done["error"]["error"] == reference, done["error"]
    assert requirement in done["error"]["message"]
    if in_requires:
        assert "uv pip install" not in log  # refused before anything was installed
    assert hits == []  # the worker fetched no URL of the build's choosing
    assert {p.name: p.read_bytes() for p in attacks.wheel_files()} == wheels_before


# --- a published file never changes -----------------------------------------------------------


def _published_file(attacks: Attacks, tmp: Path, name: str) -> tuple[Path, bytes]:
    """A wheel uploaded to the stack's index as a worker would; returns its file there and bytes."""
    (tmp / name).mkdir(parents=True)
    wheel = make_wheel(tmp / name, name, VERSION)
    index_url = f"http://127.0.0.1:{attacks.stack.index_port}"
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    publish_wheel(wheel, index_url=index_url, user="wheelyard", password=attacks.stack.password, sha256=sha)
    attacks.published[wheel.name] = sha
    stored = next(p for p in attacks.wheel_files() if p.name == wheel.name)
    return stored, stored.read_bytes()


def test_uv_target_cannot_replace_a_published_file(attacks: Attacks, tmp_path: Path) -> None:
    """Even handed ``--target=<data dir>/wheels`` and a payload wheel holding a file of a published
    wheel's name, the install (in its sandbox, as the worker runs it) writes nothing the index serves."""
    stored, original = _published_file(attacks, tmp_path, "wheelyard-attack-target")
    settings = Settings(data_dir=attacks.stack.data_dir, upstream_index=attacks.stack.simple)
    workdir = work_directory(attacks.stack.data_dir / "work")
    try:
        shared = workdir / "shared"
        shared.mkdir(mode=0o755)
        payload = make_wheel(shared, "wheelyard-payload", "1.0", extra={stored.name: b"forged bytes"})
        env = workdir / "buildenv"
        subprocess.run([uv_binary(), "venv", "-q", "--python", interpreter("3.12"), str(env)], check=True)
        with BuildLog(workdir / "build.log") as log:
            sandbox = installer_sandbox(settings, workdir, log, env / "bin" / "python")
            code = sandbox.run_command(
                [uv_binary(), "pip", "install", "--no-config", "--python", str(env / "bin" / "python")]
                + [
                    "--cache-dir",
                    str(workdir / "uv-cache"),
                    "--no-index",
                    "--target",
                    str(stored.parent),
                    str(payload),
                ],
                cwd=str(shared),
            )
        output = (workdir / "build.log").read_text()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    # Whether uv got as far as writing (into the empty tmpfs over the data directory) or not, the
    # index's files are untouched.
    print(f"uv exited {code}:\n{output}")
    assert stored.read_bytes() == original
    served = requests.get(f"http://127.0.0.1:{attacks.stack.index_port}/packages/{stored.name}", timeout=30)
    assert served.content == original
    assert not list(stored.parent.rglob("wheelyard_payload*"))


def test_a_build_never_replaces_a_published_file(attacks: Attacks, tmp_path: Path) -> None:
    """A request for a project whose file is already on the index by upload is refused as a private
    name, so no build can produce a wheel under that name; the file stays as it is."""
    name = "wheelyard-attack-preplaced"
    stored, original = _published_file(attacks, tmp_path, name)
    project = {
        "pyproject.toml": IN_TREE_BACKEND.format(requires="[]"),
        "backend.py": BACKEND.format(name=name, version=VERSION, extra=[]),
    }
    make_sdist(attacks.root / "src", name, VERSION, project, attacks.packages)
    response = attacks.stack.request(f"{name}=={VERSION}", [TARGET], from_source=True)
    assert response.status_code == 409, response.text
    assert response.json()["error"] == "private-name"
    attacks.check_no_secret(response.text)
    assert stored.read_bytes() == original
    assert published_sha256(stored.name, index_url=f"http://127.0.0.1:{attacks.stack.index_port}") == (
        hashlib.sha256(original).hexdigest()
    )


# --- 3. substitution after verification -----------------------------------------------------

# Import-time code of the package, run by the proof as the build's user: it overwrites every
# wheel it can reach with a forged but valid one (a RECORD that matches), and renames the
# repaired directory, planting the forgery in its place.
SUBSTITUTE = textwrap.dedent(
    """
    import base64, hashlib, os, pathlib, shutil, zipfile

    def forge(original, dest):
        with zipfile.ZipFile(original) as zin:
            files = {n: zin.read(n) for n in zin.namelist() if not n.endswith("RECORD")}
            record_name = [n for n in zin.namelist() if n.endswith(".dist-info/RECORD")][0]
        files["subst_pkg/forged.py"] = b"FORGED = True\\n"
        lines = []
        for path, data in files.items():
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            lines.append(f"{path},sha256={digest},{len(data)}")
        lines.append(f"{record_name},,")
        files[record_name] = ("\\n".join(lines) + "\\n").encode()
        tmp = str(dest) + ".tmp"
        with zipfile.ZipFile(tmp, "w") as zout:
            for path, data in files.items():
                zout.writestr(path, data)
        os.replace(tmp, dest)

    work = pathlib.Path.cwd()
    originals = sorted((work / "out").glob("*.whl"))
    for top, dirs, names in os.walk(work, onerror=lambda exc: print("refused", exc.filename, exc.errno)):
        for name in names:
            if name.endswith(".whl"):
                path = pathlib.Path(top) / name
                try:
                    forge(originals[0], path)
                    print("overwrote", path)
                except (OSError, IndexError) as exc:
                    print("refused", path, getattr(exc, "errno", exc))
    for repaired in (work / "worker" / "repaired", work / "repaired"):
        try:
            os.rename(repaired, str(repaired) + ".old")
            repaired.mkdir()
            forge(originals[0], repaired / originals[0].name.replace("linux_x86_64", "manylinux_2_17_x86_64"))
            print("replaced", repaired)
        except (OSError, IndexError) as exc:
            print("refused", repaired, getattr(exc, "errno", exc))
    """
)


def test_import_time_code_cannot_substitute_the_verified_wheel(attacks: Attacks) -> None:
    project = extension_project("wheelyard-attack-subst", "subst_pkg", init=SUBSTITUTE)
    done = attacks.build("wheelyard-attack-subst", project)
    log = attacks.check_contained(done)
    assert done["status"] == "published", (done, log)
    assert "imported subst_pkg" in log
    assert "overwrote" in log  # the attempt was made: out/ is still the build's
    assert "replaced" not in log
    response = requests.get(f"http://127.0.0.1:{attacks.stack.index_port}/packages/{done['wheel']}", timeout=30)
    response.raise_for_status()
    assert hashlib.sha256(response.content).hexdigest() == done["sha256"]
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        assert "subst_pkg/forged.py" not in zf.namelist()


# --- 5. every build ends with an outcome -----------------------------------------------------

HOOK_RESULTS = {
    "not-a-wheel": (
        "open(os.path.join(wheel_directory, 'not-a-wheel.txt'), 'w').close()\n    return 'not-a-wheel.txt'",
        "invalid-wheel-filename",
    ),
    "link-to-shadow": (
        "os.symlink('/etc/shadow', os.path.join(wheel_directory, NAME.replace('-', '_') + '-0.1.0-py3-none-any.whl'))\n"
        "    return NAME.replace('-', '_') + '-0.1.0-py3-none-any.whl'",
        "wheel-rejected",
    ),
}


@pytest.mark.parametrize("result", sorted(HOOK_RESULTS))
def test_a_hook_that_returns_no_wheel_fails_the_build(attacks: Attacks, result: str) -> None:
    body, reference = HOOK_RESULTS[result]
    name = f"wheelyard-attack-hook-{result}"
    backend = BACKEND.format(name=name, version=VERSION, extra=[])
    backend += f"\n\ndef build_wheel(wheel_directory, config_settings=None, metadata_directory=None):\n    {body}\n"
    project = {"pyproject.toml": IN_TREE_BACKEND.format(requires="[]"), "backend.py": backend}
    done = attacks.build(name, project)
    log = attacks.check_contained(done)
    assert done["status"] == "failed", (done, log)
    assert done["error"]["error"] == reference, done["error"]
    assert "root:" not in log  # nothing of /etc/shadow was read


def _tar_sdist(packages: Path, name: str, trick: str) -> Path:
    top = f"{name.replace('-', '_')}-{VERSION}"
    archive = packages / f"{top}.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:

        def add(member: tarfile.TarInfo, data: bytes = b"") -> None:
            member.size = len(data)
            tf.addfile(member, io.BytesIO(data) if data else None)

        add(tarfile.TarInfo(f"{top}/setup.py"), b"from setuptools import setup\nsetup()\n")
        add(tarfile.TarInfo(f"{top}/PKG-INFO"), f"Metadata-Version: 2.1\nName: {name}\nVersion: {VERSION}\n".encode())
        member = tarfile.TarInfo(f"{top}/evil")
        if trick == "dotdot":
            member.name = f"{top}/../../escaped.txt"
            add(member, b"escaped\n")
        elif trick == "symlink":
            member.type, member.linkname = tarfile.SYMTYPE, "/etc/shadow"
            add(member)
        else:
            member.type, member.linkname = tarfile.LNKTYPE, "../../../../etc/shadow"
            add(member)
    return archive


@pytest.mark.parametrize("trick", ["dotdot", "symlink", "hardlink"])
def test_a_tar_trick_sdist_fails_instead_of_staying_building(attacks: Attacks, trick: str) -> None:
    name = f"wheelyard-attack-tar-{trick}"
    archive = _tar_sdist(attacks.packages, name, trick)
    done = attacks.build(name, archive=archive)
    log = attacks.check_contained(done)
    assert done["status"] == "failed", (done, log)
    assert done["error"]["error"] == "unsafe-sdist", done["error"]
    assert not list((attacks.stack.data_dir / "work").rglob("escaped.txt"))
    assert not (attacks.stack.data_dir / "escaped.txt").exists()


# --- 4. no secret in a log -------------------------------------------------------------------


def test_a_secret_printed_by_a_build_is_redacted(attacks: Attacks) -> None:
    """A build that found the upload password (here: the test hands it over) prints it in
    pieces and whole; the log and the record hold *** instead."""
    secret = attacks.stack.password
    half = len(secret) // 2
    body = (
        "import sys\n"
        f"print('leak:', {secret!r}, flush=True)\n"
        f"sys.stdout.write({secret[:half]!r}); sys.stdout.flush()\n"
        f"sys.stdout.write({secret[half:]!r} + '\\n'); sys.stdout.flush()\n"
        f"raise SystemExit('failing with ' + {secret!r})\n"
    )
    done = attacks.build(
        "wheelyard-attack-leak",
        {
            "pyproject.toml": SETUPTOOLS_PYPROJECT,
            "setup.py": body,
        },
    )
    log = attacks.check_contained(done)
    assert done["status"] == "failed"
    assert "leak: ***" in log
    assert log.count("***") >= 3


# --- and the worker goes on -------------------------------------------------------------------


def test_after_the_attacks_the_worker_builds_the_next_job(attacks: Attacks) -> None:
    done = attacks.build("wheelyard-attack-after", extension_project("wheelyard-attack-after", "after_pkg"))
    attacks.check_contained(done)
    assert done["status"] == "published", done
