"""What the service adds to a build: request -> published through the real stack, against a bare ``python -m build``.

Starts a real stack (embedded Redis, index, API, a worker for cp312-manylinux_x86_64) and, per
package, in the same run and alternating which goes first:

* service: POST /api/builds with from_source for cp312-manylinux_x86_64, timed from just before
           the POST to the record's ``finished_at`` (queue, resolve, fetch, unpack, prepare, build,
           repair, verify, prove, publish). Each package is asked for once per stack, and every run
           has a fresh stack, so nothing is deduplicated.
* bare:    ``python -m build --wheel`` of the same sdist (unpacked, untimed) with the same CPython
           3.12, with build's default isolation: pip downloads the build requirements from PyPI,
           as the worker does with uv. pip is isolated from this machine's configuration and
           runs without a download cache.

Prints per package the service time, the bare time and the overhead (service - bare), the record's
per-step ``timings`` (and the part of the service time outside any step), and the median overhead
(target: under 2 s per build). The service's build step includes installing the build requirements
(with uv, whose cache in the stack's data directory warms up after the first build), which the bare
build does with pip and no cache; so the script also prints the median time the service spends
outside its build step ("not-build"), which does not depend on that difference.

    python bench/service_overhead.py [--runs 1] [--keep] [--packages markupsafe==3.0.2,...] [--cache DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _stack import (  # noqa: E402
    PACKAGES,
    TARGET,
    Stack,
    fresh_venv,
    pip_env,
    run,
    running_stack,
)

from builder.config import DEFAULT_UPSTREAM  # noqa: E402
from builder.upstream import SimpleIndex  # noqa: E402

STEPS = ("resolve", "fetch", "unpack", "prepare", "build", "repair", "verify", "prove", "publish")


def fetch_sdists(packages: Sequence[str], cache: Path) -> dict[str, Path]:
    """The sdist of each pin, from PyPI, hash-checked, kept in ``cache``."""
    index = SimpleIndex(DEFAULT_UPSTREAM)
    found: dict[str, Path] = {}
    for requirement in packages:
        sdist = index.resolve(requirement).sdist
        if sdist is None:
            raise SystemExit(f"{requirement} has no sdist on PyPI")
        found[requirement] = index.download(sdist, cache)
    return found


def bare_build(python: Path, sdist: Path, tmp: Path) -> float:
    """``python -m build --wheel`` of the unpacked sdist; returns the seconds it took."""
    with tempfile.TemporaryDirectory(prefix="wheelyard-bare-", dir=tmp) as work:
        with tarfile.open(sdist) as tar:
            tar.extractall(work, filter="data")
        (srcdir,) = [p for p in Path(work).iterdir() if p.is_dir()]
        outdir = Path(work) / "out"
        start = time.perf_counter()
        run([str(python), "-m", "build", "--wheel", "--outdir", str(outdir), str(srcdir)], pip_env(), cwd=Path(work))
        elapsed = time.perf_counter() - start
        if len(list(outdir.glob("*.whl"))) != 1:
            raise SystemExit(f"bare build of {sdist.name} made {list(outdir.iterdir())}")
        return elapsed


def service_build(stack: Stack, requirement: str) -> tuple[float, dict[str, Any]]:
    """POST -> the record's finished_at; the record must be published."""
    start = time.time()
    response = stack.request(requirement, [TARGET], from_source=True)
    if response.status_code != 202:
        raise SystemExit(f"{requirement}: {response.status_code} {response.text}")
    build = response.json()["builds"][0]
    if not build["created"]:
        raise SystemExit(f"{requirement}: the stack answered with an existing build {build['id']}")
    record = stack.wait_done(build["id"], timeout=900)
    if record["status"] != "published":
        raise SystemExit(f"{requirement}: build {record['status']}: {record.get('error')}\n{stack.log('worker')}")
    record["posted_at"] = start
    return record["finished_at"] - start, record


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="runs, each on a fresh stack")
    parser.add_argument("--keep", action="store_true", help="keep the stacks' directories (wheels, logs)")
    parser.add_argument("--packages", default=",".join(PACKAGES), help="comma-separated pins")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "wheelyard-bench-sdists")
    args = parser.parse_args(argv)
    packages = [p.strip() for p in args.packages.split(",") if p.strip()]

    sdists = fetch_sdists(packages, args.cache)
    rows: list[tuple[str, float, float, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(prefix="wheelyard-overhead-") as tmp_name:
        tmp = Path(tmp_name)
        python = fresh_venv(tmp / "buildvenv")
        run([str(python), "-m", "pip", "install", "-q", "--no-cache-dir", "build"], pip_env())
        for r in range(args.runs):
            with running_stack(keep=args.keep) as stack:
                for i, requirement in enumerate(packages):
                    # Alternate which goes first, so drift and warm page caches hit both alike.
                    if (i + r) % 2 == 0:
                        bare = bare_build(python, sdists[requirement], tmp)
                        service, record = service_build(stack, requirement)
                    else:
                        service, record = service_build(stack, requirement)
                        bare = bare_build(python, sdists[requirement], tmp)
                    rows.append((requirement, service, bare, record))
                    print(f"  run {r + 1} {requirement:22} service {service:6.2f} s  bare {bare:6.2f} s", flush=True)

    print(f"\n{len(packages)} packages for {TARGET}, {args.runs} run(s), one build at a time")
    print(f"{'package':22} {'service':>8} {'bare':>8} {'overhead':>9}")
    overheads: list[float] = []
    for requirement, service, bare, _ in rows:
        overheads.append(service - bare)
        print(f"{requirement:22} {service:8.2f} {bare:8.2f} {service - bare:+9.2f}")
    print(
        "\nper-step timings of the records (s): 'api' = POST to created_at, 'queue' = created_at to started_at,"
        " 'outside' = started_at to finished_at outside the steps"
    )
    header = ["api", "queue", *STEPS, "outside", "not-build"]
    print(f"{'package':22} " + " ".join(f"{h:>8}" for h in header))
    fixed: list[float] = []
    for requirement, _, _, record in rows:
        timings = record["timings"]
        api = record["created_at"] - record["posted_at"]
        queue = record["started_at"] - record["created_at"]
        outside = record["finished_at"] - record["started_at"] - sum(timings.values())
        not_build = record["finished_at"] - record["posted_at"] - timings.get("build", 0.0)
        fixed.append(not_build)
        cells = [api, queue, *(timings.get(s, 0.0) for s in STEPS), outside, not_build]
        print(f"{requirement:22} " + " ".join(f"{c:8.2f}" for c in cells))
    median = statistics.median(overheads)
    verdict = "met" if median < 2 else f"MISSED by {median - 2:.2f} s"
    print(f"\nmedian overhead {median:+.2f} s per build (target < 2 s: {verdict})")
    print(
        f"median time outside the build step {statistics.median(fixed):.2f} s per build (the service's own steps;"
        " its build step installs the build requirements with uv, the bare build with pip)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
