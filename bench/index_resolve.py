"""Resolving against the index: ``uv pip compile`` and ``pip install --dry-run`` of a 20-package set
(bench/index_corpus.py's ``dep-000`` .. ``dep-019``, 60 projects with their dependencies) against
wheelyard (embedded server and nginx), pypiserver's best configuration and a plain static server
of the same files, in one run. Median of ``--runs`` wall times, each with an empty client cache,
and the ratio to the plain static server. Target (issue 11): wheelyard within 1.5x of it.

    python bench/index_resolve.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from index_corpus import CACHE, RESOLVE_SET, fill_data_dir, plain_static, pypiserver, wheelyard_index  # noqa: E402


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "WHEELYARD_"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", UV_NO_CONFIG="1")
    env.update(UV_CACHE_DIR=str(tmp / "uv-cache"), PIP_NO_CACHE_DIR="1")
    return env


def _timed(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=900)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(argv)}\n{done.stdout}\n{done.stderr}")
    return took


def measure(simple: str, runs: int) -> dict[str, float]:
    from uv import find_uv_bin

    uv = str(find_uv_bin())
    times: dict[str, list[float]] = {"uv pip compile": [], "pip install --dry-run": []}
    for _ in range(runs):
        tmp = Path(tempfile.mkdtemp(prefix="resolve-", dir=CACHE))
        try:
            (tmp / "req.in").write_text("\n".join(RESOLVE_SET) + "\n")
            env = _env(tmp)
            times["uv pip compile"].append(
                _timed(
                    [
                        uv,
                        "pip",
                        "compile",
                        "--index-url",
                        simple,
                        "--python",
                        sys.executable,
                        "--python-version",
                        "3.12",
                        "req.in",
                    ],
                    env,
                    tmp,
                )
            )
            pip = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--index-url", simple]
            times["pip install --dry-run"].append(
                _timed([*pip, "--report", str(tmp / "report.json"), "-r", "req.in"], env, tmp)
            )
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="index-resolve-", dir=CACHE))
    data = work / "data"
    fill_data_dir(data)
    servers = [
        "plain nginx (floor)",
        "wheelyard embedded",
        "wheelyard nginx",
        "pypiserver best (cached-dir + gunicorn)",
    ]
    results: dict[str, dict[str, float]] = {}
    try:
        for server in servers:
            with ExitStack() as stack:
                if server.startswith("pypiserver"):
                    base = stack.enter_context(pypiserver(data / "wheels", True, work))
                elif server.startswith("plain"):
                    base = stack.enter_context(plain_static(data / "site", work / "plain"))
                else:
                    base = stack.enter_context(wheelyard_index(data, server.split()[1]))
                results[server] = measure(base + "/simple/", args.runs)
                print(f"  {server}: {results[server]} (load average {os.getloadavg()[0]:.1f})", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    floor = results["plain nginx (floor)"]
    print(f"\n{len(RESOLVE_SET)} requirements (60 projects resolved), median of {args.runs}, empty client caches")
    print(f"{'server':42} {'client':24} {'seconds':>8} {'/ floor':>8}")
    for server, timings in results.items():
        for client, seconds in timings.items():
            print(f"{server:42} {client:24} {seconds:8.2f} {seconds / floor[client]:7.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
