"""Ensure of a 50-package real closure for two targets (CPython 3.12 and 3.13, manylinux x86_64)
on an empty index, against what a team does without wheelyard, in the same run: resolve the
closure for each Python and ``pip wheel`` it, one target after the other.

* ``wheelyard ensure -r requirements.txt -t cp312-manylinux_x86_64 -t cp313-manylinux_x86_64 --wait``
  on a fresh stack (embedded Redis, index, API, one worker of the default concurrency);
* for each Python in turn: ``uv pip compile`` for that Python and platform, then
  ``pip wheel --no-deps -r pins.txt`` with that Python's pip, from PyPI, with no cache.

Both end with every wheel of both closures in one place; ensure's is an index clients install
from. Run: ``.venv/bin/python bench/ensure_empty.py``.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _stack import interpreter as python_of
from _stack import make_venv, pip_env, running_stack

REQUIREMENTS = ["fastapi[standard]==0.115.6", "pandas==2.2.3", "rich==13.9.4"]
TARGETS = {"cp312-manylinux_x86_64": "3.12", "cp313-manylinux_x86_64": "3.13"}


def resolve(work: Path, version: str) -> Path:
    from uv import find_uv_bin

    pins = work / f"pins-{version}.txt"
    subprocess.run(
        [str(find_uv_bin()), "pip", "compile", "--no-config", "--no-header", "--no-annotate", "--quiet"]
        + ["--python-version", version, "--python-platform", "x86_64-manylinux_2_28", "-o", str(pins)]
        + [str(work / "requirements.txt")],
        env=pip_env(UV_PYTHON_DOWNLOADS="never", UV_CACHE_DIR=str(work / f"uv-cache-{version}")),
        check=True,
    )
    return pins


def baseline(work: Path) -> tuple[float, int]:
    started = time.perf_counter()
    wheels = 0
    for version in TARGETS.values():
        pins = resolve(work, version)
        python = make_venv(python_of(version), work / f"venv-{version}")
        out = work / f"wheels-{version}"
        subprocess.run(
            [str(python), "-m", "pip", "wheel", "--no-deps", "-q", "-r", str(pins), "-w", str(out)],
            env=pip_env(),
            check=True,
        )
        wheels += len(list(out.glob("*.whl")))
    return time.perf_counter() - started, wheels


def with_ensure(work: Path) -> tuple[float, str]:
    targets = ",".join([*TARGETS, "py3-none-any"])
    with running_stack(work / "stack", targets=targets) as stack:
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "server.cli", "ensure", "--api-url", stack.api, "-r", str(work / "requirements.txt")]
            + [arg for target in TARGETS for arg in ("-t", target)]
            + ["--wait", "--timeout", "3000"],
            env=stack.env,
            capture_output=True,
            text=True,
        )
        took = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"ensure failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return took, result.stderr.strip().splitlines()[-1]


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="wheelyard-bench-ensure-empty-") as tmp:
        work = Path(tmp)
        (work / "requirements.txt").write_text("\n".join(REQUIREMENTS) + "\n")
        took, last = with_ensure(work)
        print(f"wheelyard ensure, 2 targets, empty index: {took:.1f} s ({last.split('] ', 1)[-1]})")
        base, wheels = baseline(work)
        print(f"resolve + pip wheel, one target after the other: {base:.1f} s ({wheels} wheels)")
        print(f"ratio (resolve + pip wheel) / ensure: {base / took:.2f}x")


if __name__ == "__main__":
    main()
