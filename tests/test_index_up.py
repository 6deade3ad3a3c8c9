"""`wheelyard up` on a machine without nginx and on one with it: the embedded server, or nginx, serves
the index, and `up` says which. Each run is a real `wheelyard up --no-worker` (embedded Redis, the
index, the API) with an API token, an upload password and a read password: the children get those
as 0600 files, never as environment variables; real pip installs a wheel published through the
index and asks for a project it lacks, whose report reaches the API with the token.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from builder.publish import publish_wheel
from tests.conftest import free_port, isolated_pip_env, start_up, wait_until
from tests.index_parts import dist_wheel
from tests.test_config import write_toml
from tests.test_stack import short_data_dir  # noqa: F401 - a fixture

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "api-token-for-the-up-test"
UPLOAD_PASSWORD = "upload-password-for-the-up-test"
READ_PASSWORD = "read-password-for-the-up-test"
SECRETS = (TOKEN, UPLOAD_PASSWORD, READ_PASSWORD)
NGINX = shutil.which("nginx")


def path_without_nginx(tmp: Path) -> str:
    """This PATH, with each directory that holds nginx replaced by a copy (of links) without it."""
    dirs = []
    for i, entry in enumerate(os.environ["PATH"].split(os.pathsep)):
        if not (Path(entry) / "nginx").exists():
            dirs.append(entry)
            continue
        shadow = tmp / f"path-{i}"
        shadow.mkdir()
        for name in os.listdir(entry):
            if name != "nginx":
                (shadow / name).symlink_to(Path(entry) / name)
        dirs.append(str(shadow))
    return os.pathsep.join(dirs)


def _children_environ(up: subprocess.Popen[bytes]) -> dict[int, bytes]:
    """The environment of every process under `up` (its children and theirs)."""
    parents: dict[int, int] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            parents[int(pid)] = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    below, frontier = set(), {up.pid}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - below
        below |= frontier
    found = {}
    for pid in below:
        try:
            found[pid] = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
    return found


@pytest.mark.parametrize("server", ["embedded", "nginx"])
def test_up_serves_the_index_with_nginx_when_on_path_else_embedded(
    server: str,
    short_data_dir: Path,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    if server == "nginx" and NGINX is None:
        pytest.skip("no nginx on this machine")
    api_port, index_port = free_port(), free_port()
    api, simple = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{index_port}/simple/"
    config = write_toml(
        tmp_path / "wheelyard.toml",
        {
            "data_dir": short_data_dir,
            "api_port": api_port,
            "index_port": index_port,
            "api_token": TOKEN,
            "index_password": UPLOAD_PASSWORD,
            "index_read_password": READ_PASSWORD,
        },
    )
    env = isolated_pip_env()
    if server == "embedded":
        env["PATH"] = path_without_nginx(tmp_path)
        assert shutil.which("nginx", path=env["PATH"]) is None
    log_path = tmp_path / "up.log"
    up = start_up(config, "--no-worker", log=log_path, env=env)

    def up_log() -> str:
        return log_path.read_text(errors="replace")

    try:
        wait_until(lambda: "wheelyard is up" in up_log() or up.poll() is not None, 180, "`wheelyard up`")
        assert up.poll() is None, up_log()
        said = {
            "embedded": f"wheelyard index: the embedded server serves {simple}",
            "nginx": f"wheelyard index: nginx ({NGINX}) serves {simple}",
        }
        assert said[server] in up_log(), up_log()
        assert said["nginx" if server == "embedded" else "embedded"] not in up_log()
        page = requests.get(simple, auth=("reader", READ_PASSWORD), timeout=10)
        assert page.status_code == 200, page.text
        assert page.headers["Server"].startswith("nginx" if server == "nginx" else "wheelyard")
        assert requests.get(simple, timeout=10).status_code == 401

        _assert_secrets_reach_children_as_files(up, short_data_dir)
        _assert_a_published_wheel_installs_and_a_miss_is_reported(api, index_port, tmp_path, env)
        readme = (ROOT / "README.md").read_text()
        assert "`wheelyard index: nginx (" in readme and "`wheelyard index: the embedded\nserver serves" in readme
    finally:
        os.killpg(up.pid, signal.SIGTERM)
        up.wait(timeout=90)


def _assert_secrets_reach_children_as_files(up: subprocess.Popen[bytes], data_dir: Path) -> None:
    environs = _children_environ(up)
    assert len(environs) >= 3, environs.keys()  # the index, its upload endpoint, the API (and Redis)
    for pid, environ in environs.items():
        for secret in SECRETS:
            assert secret.encode() not in environ, f"pid {pid} has a secret in its environment"
    secrets_dir = data_dir / "run" / "secrets"
    assert stat.S_IMODE(secrets_dir.stat().st_mode) == 0o700
    files = {p.name: p for p in secrets_dir.iterdir()}
    assert {"WHEELYARD_API_TOKEN", "WHEELYARD_INDEX_PASSWORD", "WHEELYARD_INDEX_READ_PASSWORD"} <= set(files)
    for path in files.values():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert files["WHEELYARD_API_TOKEN"].read_text().strip() == TOKEN


def _assert_a_published_wheel_installs_and_a_miss_is_reported(
    api: str, index_port: int, tmp_path: Path, env: dict[str, str]
) -> None:
    index = f"http://127.0.0.1:{index_port}"
    wheel = dist_wheel(tmp_path / "dist", "up-served", "1.0")
    publish_wheel(wheel, index_url=index, user="wheelyard", password=UPLOAD_PASSWORD)
    reading = f"http://reader:{READ_PASSWORD}@127.0.0.1:{index_port}/simple/"
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--index-url", reading, "-d", str(tmp_path / "dl")]
    done = subprocess.run([*pip, "up-served==1.0"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "dl" / wheel.name).read_bytes() == wheel.read_bytes()

    # The API takes reports only with its token; the index's carry it.
    assert requests.get(f"{api}/api/index-requests", params={"path": "/simple/x/"}, timeout=10).status_code == 401
    done = subprocess.run([*pip, "up-missing-project"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "up-missing-project" in done.stdout + done.stderr

    def missed() -> bool:
        listed = requests.get(f"{api}/api/misses", timeout=10).json()["misses"]
        return any(m["project"] == "up-missing-project" for m in listed)

    wait_until(missed, 60, "the index's report of the miss to reach the API")
