"""Make the corpus's logs of the causes wheelyard itself writes: real builds by a real worker.

A real stack (index, API and one root worker: Celery, bubblewrap, the sandbox's limits) from
tests/conftest.py builds small sdists made here, served by a local upstream index: each one
does in its build hook what breaks one of the sandbox's limits (time, memory, processes, log
size, files, disk), and one builds a wheel whose module cannot be imported (the proof step).
The log each build wrote (``GET /api/builds/ID/log``) is stored as
``tests/corpus/own/<id>.log``, trimmed as the other logs there (make_own_logs.trim); labels are
written afterwards, by reading the logs.

Run:  python tests/corpus/make_worker_logs.py [--start 701] [CASE ...]   (needs Redis and bwrap)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.conftest import REDIS_SERVER, RedisDatabases, Stack, make_sdist, upstream_index  # noqa: E402
from tests.corpus.make_own_logs import trim  # noqa: E402

OWN = Path(__file__).resolve().parent / "own"
TARGET = "py3-none-any"
# Small limits, so that each case breaks its own limit quickly and the others not at all.
LIMITS = {
    "WHEELYARD_BUILD_TIMEOUT": "45",
    "WHEELYARD_BUILD_MEMORY": str(384 * 1024**2),
    "WHEELYARD_BUILD_PROCESSES": "48",
    "WHEELYARD_BUILD_DISK": str(96 * 1024**2),
    "WHEELYARD_BUILD_FILES": "20000",
    "WHEELYARD_BUILD_LOG_BYTES": str(1024**2),
}

# What setup.py does first, in every build hook, in the sandbox.
BODIES = {
    "timeout": "import time\ntime.sleep(600)\n",
    "memory": "blocks = []\nwhile True:\n    blocks.append(b'\\x01' * (16 * 1024**2))\n",
    "processes": (
        "import os, time\n"
        "for _ in range(400):\n"
        "    try:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(120)\n"
        "            os._exit(0)\n"
        "    except OSError:\n"
        "        time.sleep(0.05)\n"
    ),
    "log-size": "import sys\nline = 'x' * 1000 + '\\n'\nwhile True:\n    sys.stdout.write(line)\n",
    "files": (
        "import os\nos.makedirs('flood', exist_ok=True)\n"
        "for i in range(300_000):\n    open(f'flood/{i}', 'w').close()\n"
    ),
    "disk": "with open('big.bin', 'wb') as fh:\n    for _ in range(400):\n        fh.write(b'\\x01' * 1024**2)\n",
    "import": "",
}


def project(case: str, name: str) -> dict[str, str]:
    files = {
        "pyproject.toml": '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n',
        "setup.py": f"{BODIES[case]}\nfrom setuptools import setup\n"
        f"setup(name={name!r}, version='0.1.0', py_modules=['{name.replace('-', '_')}'])\n",
        f"{name.replace('-', '_')}.py": "VALUE = 1\n",
    }
    if case == "import":
        # The wheel builds; its module needs a distribution the package does not declare.
        files[f"{name.replace('-', '_')}.py"] = "import wheelyard_undeclared_dependency\n"
    return files


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cases", nargs="*", default=list(BODIES))
    ap.add_argument("--start", type=int, default=701, help="number of the first log")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="worker-logs-") as d:
        tmp = Path(d)
        packages = tmp / "upstream"
        packages.mkdir()
        with upstream_index(packages) as upstream, RedisDatabases(REDIS_SERVER) as databases:
            stack = Stack(tmp / "stack", databases.take(), WHEELYARD_UPSTREAM_INDEX=upstream, **LIMITS)
            try:
                stack.start_index_and_api()
                stack.start_worker("worker-logs", TARGET)
                for i, case in enumerate(args.cases):
                    record(stack, packages, tmp, case, f"own-{args.start + i:03d}")
            finally:
                stack.stop_all()
    return 0


def record(stack: Stack, packages: Path, tmp: Path, case: str, log_id: str) -> None:
    name = f"wheelyard-{case}-case"
    make_sdist(tmp / "src", name, "0.1.0", project(case, name), packages)
    response = stack.request(f"{name}==0.1.0", [TARGET], from_source=True)
    response.raise_for_status()
    build_id = response.json()["builds"][0]["id"]
    done = stack.wait_done(build_id, timeout=400)
    log = requests.get(f"{stack.api}/api/builds/{build_id}/log", timeout=60)
    log.raise_for_status()
    # trimmed as every log of the corpus is (a flood keeps its first and last lines)
    (OWN / f"{log_id}.log").write_text(trim(log.content.decode("utf-8", "replace")), encoding="utf-8")
    summary = {"id": log_id, "case": case, "status": done["status"], "error": (done.get("error") or {}).get("cause")}
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
