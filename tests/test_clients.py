"""Clients other than the test's own pip: uv installs a wheel wheelyard built, and a CI-style loop
makes sure a requirements file's wheels exist before pip installs it, binary only.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import re
import subprocess
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
import requests

from tests.conftest import Stack, interpreter, isolated_pip_env, make_venv, pip_install_from_index

pytestmark = pytest.mark.slow

TARGET = "cp312-manylinux_x86_64"


@pytest.fixture
def stack(make_stack: Any) -> Stack:
    """Index, API and a worker for cp312 (and pure wheels), on a Redis database of their own."""
    s: Stack = make_stack(db=41)
    s.start_index_and_api()
    s.start_worker("worker-clients", f"{TARGET},py3-none-any")
    return s


def uv_env(tmp: Path) -> dict[str, str]:
    return isolated_pip_env(UV_NO_CONFIG="1", UV_SYSTEM_CERTS="1", UV_CACHE_DIR=str(tmp / "uv-cache"))


def record_rows(text: str) -> dict[str, str]:
    """A RECORD file as {path: "algo=digest"} (empty for the entries without a hash)."""
    return {row[0]: row[1] for row in csv.reader(io.StringIO(text)) if row}


def index_file_url(stack: Stack, project: str, filename: str) -> tuple[str, str]:
    """The URL of ``filename`` on the index's simple page of ``project``, and the sha256 the page gives."""
    page_url = urljoin(stack.simple, f"{project}/")
    page = requests.get(page_url, timeout=10)
    page.raise_for_status()
    for href in re.findall(r'href="([^"]+)"', page.text):
        url, _, fragment = href.partition("#")
        if url.rsplit("/", 1)[-1] == filename:
            assert fragment.startswith("sha256="), href
            return urljoin(page_url, url), fragment.removeprefix("sha256=")
    raise AssertionError(f"{filename} is not on {page_url}:\n{page.text}")


def test_uv_installs_the_wheel_wheelyard_built(stack: Stack, tmp_path: Path) -> None:
    response = stack.request("markupsafe==3.0.2", [TARGET], from_source=True)
    assert response.status_code == 202, response.text
    done = stack.wait_done(response.json()["builds"][0]["id"])
    assert done["status"] == "published", (done, stack.log("worker-clients"))
    assert done["source"] == "markupsafe-3.0.2.tar.gz" and "build" in done["timings"], done
    wheel_name = done["wheel"]
    assert "-cp312-cp312-manylinux" in wheel_name

    # The file on the index is the one the record names, byte for byte.
    url, listed_sha = index_file_url(stack, "markupsafe", wheel_name)
    blob = requests.get(url, timeout=30).content
    assert hashlib.sha256(blob).hexdigest() == done["sha256"] == listed_sha

    from uv import find_uv_bin

    python = make_venv(interpreter("3.12"), tmp_path / "venv")
    # The index is the only index uv is given and --only-binary :all: forbids building: what installs
    # is a wheel from wheelyard's index or nothing.
    result = subprocess.run(
        [
            str(find_uv_bin()),
            "pip",
            "install",
            "--no-config",
            "--python",
            str(python),
            "--index-url",
            stack.simple,
            "--only-binary",
            ":all:",
            "markupsafe==3.0.2",
        ],
        env=uv_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "+ markupsafe==3.0.2" in result.stderr, result.stderr

    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['platlib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    dist_info = site / "markupsafe-3.0.2.dist-info"
    assert dist_info.is_dir(), sorted(p.name for p in site.iterdir())
    # Installed from an index, not from a URL or a path.
    assert not (dist_info / "direct_url.json").exists()
    assert (dist_info / "INSTALLER").read_text().strip() == "uv"

    # The installed RECORD holds every entry of the RECORD in the index's wheel, hash for hash, plus
    # only what an installer adds; and every hashed file on disk matches its entry.
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        wheel_record = record_rows(zf.read("markupsafe-3.0.2.dist-info/RECORD").decode())
    installed = record_rows((dist_info / "RECORD").read_text())
    for path, digest in wheel_record.items():
        assert installed.get(path) == digest, (path, digest, installed.get(path))
    added = set(installed) - set(wheel_record)
    assert added <= {f"markupsafe-3.0.2.dist-info/{n}" for n in ("INSTALLER", "REQUESTED", "direct_url.json")}, added
    for path, digest in installed.items():
        if not digest:
            continue
        algo, _, expected = digest.partition("=")
        actual = base64.urlsafe_b64encode(hashlib.new(algo, (site / path).read_bytes()).digest()).rstrip(b"=")
        assert actual.decode() == expected, path
    assert any(p.endswith(".so") for p in wheel_record), sorted(wheel_record)

    out = subprocess.run(
        [str(python), "-c", "import markupsafe._speedups as s; print(s.__file__)"],
        check=True,
        capture_output=True,
        text=True,
        env=isolated_pip_env(),
    )
    assert out.stdout.strip().startswith(str(site / "markupsafe")) and ".so" in out.stdout


def test_ci_loop_makes_sure_a_requirements_files_wheels_exist(stack: Stack, tmp_path: Path) -> None:
    from server.cli import main

    requirements = tmp_path / "requirements.txt"
    requirements.write_text("markupsafe==3.0.2\niniconfig==2.0.0\n")
    for line in requirements.read_text().splitlines():
        out, err = io.StringIO(), io.StringIO()
        code = main(["request", line, "-t", TARGET, "--wait", "--api-url", stack.api], stdout=out, stderr=err)
        assert code == 0, (line, out.getvalue(), err.getvalue(), stack.log("worker-clients"))
        assert f"{TARGET}: " in out.getvalue(), out.getvalue()

    python, installed = pip_install_from_index(stack.simple, "3.12", tmp_path, "-r", str(requirements))
    assert set(installed) == {"markupsafe", "iniconfig"}, installed
    index_root = f"http://127.0.0.1:{stack.index_port}/"
    assert all(url.startswith(index_root) and url.endswith(".whl") for url in installed.values()), installed
    subprocess.run([str(python), "-c", "import markupsafe._speedups, iniconfig"], check=True, env=isolated_pip_env())
