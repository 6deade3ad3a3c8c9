"""Throughput of one worker: 21 real compiled packages for cp312-manylinux_x86_64 through
`wheelyard up` with its default concurrency, against `pip wheel --no-deps` of the same sdists one
after another, in the same run.

    .venv/bin/python bench/parallel_builds.py [--only-wheelyard] [--packages N]

The sdists are downloaded once into bench/.cache/parallel-sdists (PyPI) and served to wheelyard by a
local pypiserver that sends every other project (the build requirements) to PyPI; pip builds the
same files. Both build for CPython 3.12 with their own isolated build environments; wheelyard also
repairs, verifies, proves (installs and imports) and publishes each wheel. Target: wheelyard's wall
time <= 0.7 x the serial pip time on a 2-core machine. Prints both wall times, the ratio, and the
load of the machine before and after (other work on a shared host slows both).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.conftest import free_port, interpreter, isolated_pip_env, wait_until  # noqa: E402

TARGET = "cp312-manylinux_x86_64"
CACHE = ROOT / "bench" / ".cache" / "parallel-sdists"
# C (and Cython, C++) extensions that build from source with CPython 3.12 and gcc here.
PACKAGES = [
    "markupsafe==3.0.2",
    "simplejson==3.19.3",
    "ujson==5.10.0",
    "wrapt==1.16.0",
    "psutil==6.1.0",
    "regex==2024.11.6",
    "bitarray==3.0.0",
    "mmh3==5.0.1",
    "xxhash==3.5.0",
    "setproctitle==1.3.4",
    "crc32c==2.7.1",
    "lru-dict==1.3.0",
    "pyrsistent==0.20.0",
    "greenlet==3.1.1",
    "brotli==1.1.0",
    "immutables==0.21",
    "multidict==6.1.0",
    "msgpack==1.1.0",
    "zope.interface==7.2",
    "cffi==1.17.1",
    "time-machine==2.16.0",
]


def sdists(packages: list[str]) -> list[Path]:
    """The sdist of each package, downloaded once."""
    CACHE.mkdir(parents=True, exist_ok=True)
    found = []
    for requirement in packages:
        name, version = requirement.split("==")
        stem = name.replace("-", "_").replace(".", "_").lower()

        def match(stem: str = stem, version: str = version) -> list[Path]:
            return [
                p
                for p in CACHE.glob("*.tar.gz")
                if p.name.lower().replace("-", "_").replace(".", "_").startswith(f"{stem}_{version.replace('.', '_')}")
            ]

        if not match():
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", requirement]
                + ["-d", str(CACHE)],
                check=True,
                env=isolated_pip_env(),
            )
        found.append(match()[0])
    return found


def serial_pip_wheel(files: list[Path], work: Path) -> float:
    """`pip wheel --no-deps` of each sdist, one after another, with CPython 3.12."""
    python = interpreter("3.12")
    out = work / "pip-wheels"
    env = isolated_pip_env(PIP_CACHE_DIR=str(work / "pip-cache"))
    started = time.monotonic()
    for sdist in files:
        done = subprocess.run(
            [python, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(sdist)],
            env=env,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise SystemExit(f"pip wheel {sdist.name} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return time.monotonic() - started


def upstream(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pypiserver", "run", "-p", str(port), "-i", "127.0.0.1", "-a", ".", "-P", "."]
        + ["--hash-algo", "sha256", "--fallback-url", "https://pypi.org/simple/", str(CACHE)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _ok(f"{url}/health"), 30, "the local upstream index")
    return proc, f"{url}/simple/"


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def through_wheelyard_up(packages: list[str], work: Path, upstream_url: str) -> tuple[float, str]:
    """`wheelyard up` (embedded Redis, default concurrency), every package requested at once."""
    api_port, index_port = free_port(), free_port()
    env = isolated_pip_env(
        WHEELYARD_DATA_DIR=str(work / "wheelyard"),
        WHEELYARD_UPSTREAM_INDEX=upstream_url,
        WHEELYARD_API_PORT=str(api_port),
        WHEELYARD_INDEX_PORT=str(index_port),
        PYTHONUNBUFFERED="1",
    )
    log = (work / "up.log").open("wb")
    up = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "up", "--targets", TARGET],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=ROOT,
    )
    api = f"http://127.0.0.1:{api_port}"
    try:
        wait_until(lambda: up.poll() is None and _workers(api), 300, "wheelyard up and its worker")
        started = time.monotonic()
        ids = []
        for requirement in packages:
            r = requests.post(
                f"{api}/api/builds", json={"requirement": requirement, "targets": [TARGET], "from_source": True}
            )
            r.raise_for_status()
            ids.append(r.json()["builds"][0]["id"])
        records = wait_until(lambda: _all_done(api, ids), 3600, "every build", interval=0.5)
        elapsed = time.monotonic() - started
        failed = [
            f"{b['name']}: {(b.get('error') or {}).get('message')}" for b in records if b["status"] != "published"
        ]
        if failed:
            raise SystemExit("wheelyard builds failed:\n" + "\n".join(failed))
        worker_line = next(
            (line for line in (work / "up.log").read_text(errors="replace").splitlines() if "build(s) at once" in line),
            "",
        )
        return elapsed, worker_line.split("; ", 1)[-1]
    finally:
        os.killpg(up.pid, signal.SIGTERM)
        up.wait(timeout=120)


def _workers(api: str) -> bool:
    try:
        return bool(requests.get(f"{api}/api/workers", timeout=5).json()["workers"])
    except (requests.RequestException, ValueError, KeyError):
        return False


def _all_done(api: str, ids: list[str]) -> list[dict[str, object]] | None:
    records = [requests.get(f"{api}/api/builds/{i}", timeout=10).json() for i in ids]
    return records if all(r["status"] in ("published", "mirrored", "failed") for r in records) else None


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packages", type=int, default=len(PACKAGES))
    parser.add_argument("--only-wheelyard", action="store_true")
    args = parser.parse_args()
    packages = PACKAGES[: args.packages]
    files = sdists(packages)
    work = Path(tempfile.mkdtemp(prefix="wheelyard-bench-parallel-"))
    print(f"{len(packages)} packages for {TARGET}; before: {load()}")
    server, upstream_url = upstream(work)
    try:
        wheelyard, parallelism = through_wheelyard_up(packages, work, upstream_url)
        print(f"wheelyard up ({parallelism}): {wheelyard:.1f} s; {load()}")
        if args.only_wheelyard:
            return
        pip = serial_pip_wheel(files, work)
        print(f"pip wheel --no-deps, one after another: {pip:.1f} s; {load()}")
        print(f"ratio wheelyard / serial pip: {wheelyard / pip:.2f} (target <= 0.70)")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
