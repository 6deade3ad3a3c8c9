"""What a client's ``pip install`` costs from wheelyard's index, against compiling and against a local directory.

Starts a real stack (embedded Redis, index, API, a worker for cp312-manylinux_x86_64), has it
build a set of compiled packages from source, then times, each in a fresh venv of CPython 3.12
(venv creation not timed), N times, rotating which goes first:

* index:   ``pip install --only-binary :all: --index-url <index>/simple/ PKGS``
* compile: ``pip install --no-binary NAMES PKGS`` from PyPI, with build isolation, as a user
           without wheels would: the packages compile, their build requirements come as wheels
           (``--no-binary :all:`` would also compile setuptools and Cython, which no user does)
* floor:   ``pip install --no-index --find-links <the index's wheel directory> PKGS``

Every pip call is isolated from this machine's pip configuration and runs with ``--no-cache-dir``.
Prints the medians and the ratios index/floor (target <= 1.3) and compile/index (target >= 10).

    python bench/client_install.py [--runs 3] [--keep] [--packages markupsafe==3.0.2,...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _stack import (  # noqa: E402
    PACKAGES,
    Stack,
    build_from_source,
    fresh_venv,
    pip_env,
    project_name,
    run,
    running_stack,
    wheels_dir,
)

VARIANTS = ("index", "compile", "floor")


def pip_command(variant: str, stack: Stack, packages: Sequence[str]) -> list[str]:
    if variant == "index":
        return ["--only-binary", ":all:", "--index-url", stack.simple, *packages]
    if variant == "compile":
        return ["--no-binary", ",".join(project_name(p) for p in packages), *packages]
    return ["--no-index", "--find-links", str(wheels_dir(stack)), *packages]


def check_report(variant: str, report: Path, stack: Stack, packages: Sequence[str]) -> None:
    """Each variant installed what it claims: wheels from the index, compiled sdists, local wheels."""
    installed = json.loads(report.read_text())["install"]
    urls = {i["metadata"]["name"].lower(): i["download_info"]["url"] for i in installed}
    wanted = {project_name(p).lower() for p in packages}
    if set(urls) != wanted:
        raise SystemExit(f"{variant}: installed {sorted(urls)}, expected {sorted(wanted)}")
    if variant == "index":
        ok = all(u.startswith(f"http://127.0.0.1:{stack.index_port}/") and u.endswith(".whl") for u in urls.values())
    elif variant == "compile":
        ok = all(u.endswith((".tar.gz", ".zip")) for u in urls.values())
    else:
        ok = all(u.startswith("file://") and u.endswith(".whl") for u in urls.values())
    if not ok:
        raise SystemExit(f"{variant}: unexpected sources {urls}")


def one_install(variant: str, stack: Stack, packages: Sequence[str], tmp: Path) -> float:
    with tempfile.TemporaryDirectory(prefix=f"wheelyard-client-{variant}-", dir=tmp) as work:
        python = fresh_venv(Path(work) / "venv")
        report = Path(work) / "report.json"
        cmd = [str(python), "-m", "pip", "install", "--no-cache-dir", "--report", str(report)]
        cmd += pip_command(variant, stack, packages)
        env = pip_env()
        start = time.perf_counter()
        run(cmd, env, cwd=Path(work))
        elapsed = time.perf_counter() - start
        check_report(variant, report, stack, packages)
        return elapsed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the stack's directory (wheels, logs)")
    parser.add_argument("--packages", default=",".join(PACKAGES), help="comma-separated pins")
    args = parser.parse_args(argv)
    packages = [p.strip() for p in args.packages.split(",") if p.strip()]

    with running_stack(keep=args.keep) as stack:
        print(f"building {len(packages)} packages from source for cp312-manylinux_x86_64 through the stack")
        for requirement in packages:
            record = build_from_source(stack, requirement)
            print(f"  {requirement:22} {record['finished_at'] - record['created_at']:7.1f} s  {record['wheel']}")
        with tempfile.TemporaryDirectory(prefix="wheelyard-client-") as tmp:
            probe = fresh_venv(Path(tmp) / "probe")
            pip_version = subprocess.run(
                [str(probe), "-m", "pip", "--version"], capture_output=True, text=True, env=pip_env(), check=True
            ).stdout.split(" from ")[0]
            times: dict[str, list[float]] = {v: [] for v in VARIANTS}
            for i in range(args.runs):
                # Rotate which variant goes first, so drift and warm caches hit all alike.
                order = VARIANTS[i % 3 :] + VARIANTS[: i % 3]
                for variant in order:
                    t = one_install(variant, stack, packages, Path(tmp))
                    times[variant].append(t)
                    print(f"  run {i + 1} {variant:8} {t:7.2f} s", flush=True)

    print(f"\n{len(packages)} packages ({', '.join(packages)}), CPython 3.12, {pip_version}, {args.runs} runs each")
    for variant in VARIANTS:
        print(f"{variant:8} " + " ".join(f"{t:7.2f}" for t in times[variant]))
    med = {v: statistics.median(times[v]) for v in VARIANTS}
    print("median   " + ", ".join(f"{v} {med[v]:.2f} s" for v in VARIANTS))
    index_floor = med["index"] / med["floor"]
    compile_index = med["compile"] / med["index"]
    print(f"index/floor   {index_floor:6.2f}  (target <= 1.3: {'met' if index_floor <= 1.3 else 'MISSED'})")
    print(f"compile/index {compile_index:6.2f}  (target >= 10:  {'met' if compile_index >= 10 else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
