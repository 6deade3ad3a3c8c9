"""Ensure of a 100-package lock on an index that already holds every wheel, against
``pip download --only-binary :all:`` of the same pins from the same index, in the same run.

A real closure (jupyterlab, pandas, requests[socks], httpx[http2], rich: about a hundred
packages) is locked by a real uv (``pylock.toml``), its wheels are put on a fresh wheelyard's
index by one ensure (mirrored from PyPI), and then both are timed on the full index:

* ``wheelyard ensure --lock pylock.toml -t cp312-manylinux_x86_64`` (the whole command line, process
  start included, and the API's own figure for the request);
* ``pip download --only-binary :all: --no-deps -r pins.txt --index-url wheelyard`` (what a CI job
  that checks a lock against the index by downloading it does), with no cache.

Target: ensure under 1 s and faster than pip. Run: ``.venv/bin/python bench/ensure_present.py``.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _stack import TARGET, fresh_venv, pip_env, running_stack

REQUIREMENTS = ["jupyterlab==4.3.4", "pandas==2.2.3", "requests[socks]==2.32.3", "httpx[http2]==0.28.1", "rich==13.9.4"]
RUNS = 5


def lock(work: Path) -> Path:
    from uv import find_uv_bin

    (work / "requirements.in").write_text("\n".join(REQUIREMENTS) + "\n")
    out = work / "pylock.toml"
    subprocess.run(
        [str(find_uv_bin()), "pip", "compile", "--no-config", "--no-header", "--quiet", "--python-version", "3.12"]
        + ["--python-platform", "x86_64-manylinux_2_28", "--format", "pylock.toml", "-o", str(out)]
        + [str(work / "requirements.in")],
        env=pip_env(UV_PYTHON_DOWNLOADS="never", UV_CACHE_DIR=str(work / "uv-cache")),
        check=True,
    )
    return out


def ensure(stack: object, work: Path, *args: str) -> tuple[float, dict[str, object]]:
    report = work / "report.json"
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "server.cli", "ensure", "--api-url", stack.api, *args, "--json", str(report)],  # type: ignore[attr-defined]
        env=stack.env,  # type: ignore[attr-defined]
        capture_output=True,
        text=True,
    )
    took = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"ensure failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return took, json.loads(report.read_text())


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="wheelyard-bench-ensure-") as tmp:
        work = Path(tmp)
        pylock = lock(work)
        with running_stack(work / "stack") as stack:
            fill, report = ensure(stack, work, "--lock", str(pylock), "-t", TARGET, "--wait", "--timeout", "1800")
            pins = sorted({pin for pins in report["closures"].values() for pin in pins})  # type: ignore[attr-defined]
            (work / "pins.txt").write_text("\n".join(pins) + "\n")
            print(f"lock: {len(pins)} packages; first ensure on the empty index (mirroring them): {fill:.1f} s")

            ensure_times, server_times = [], []
            for _ in range(RUNS):
                took, report = ensure(stack, work, "--lock", str(pylock), "-t", TARGET)
                assert report["counts"]["present"] == len(report["items"]), report["counts"]  # type: ignore[index]
                ensure_times.append(took)
                server_times.append(float(report["elapsed"]))  # type: ignore[arg-type]

            python = fresh_venv(work / "venv")
            pip_times = []
            for run in range(RUNS):
                dest = work / f"download-{run}"
                started = time.perf_counter()
                subprocess.run(
                    [str(python), "-m", "pip", "download", "--only-binary", ":all:", "--no-deps", "-q"]
                    + ["--index-url", stack.simple, "-d", str(dest), "-r", str(work / "pins.txt")],
                    env=pip_env(),
                    check=True,
                )
                pip_times.append(time.perf_counter() - started)

    ensure_median = statistics.median(ensure_times)
    pip_median = statistics.median(pip_times)
    print(
        f"wheelyard ensure --lock (full index), median of {RUNS}: {ensure_median:.3f} s"
        f" (the API's part: {statistics.median(server_times):.3f} s)"
    )
    print(f"pip download --only-binary :all: of the same {len(pins)} pins, median of {RUNS}: {pip_median:.3f} s")
    print(
        f"ratio pip / ensure: {pip_median / ensure_median:.1f}x; target: ensure < 1 s and faster than pip: "
        f"{'met' if ensure_median < 1 and ensure_median < pip_median else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
