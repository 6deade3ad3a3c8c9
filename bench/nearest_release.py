"""The nearest working release of a failed build: read from the upstream Simple API, against the
same answer from the Redis cache (builder/nearest.py), for real pinned releases without a wheel
for cp313-manylinux_x86_64.

Starts an embedded Redis of its own (no database of the machine's Redis is touched). For each
release, in the same run: the median of RUNS lookups with the cache emptied before each (one
Simple API request, PEP 691 JSON, and the tag check of every wheel listed) and the median of RUNS
lookups from the cache. Prints a table (release, newer, older, both times) and the ratio of the
totals; the cache is what the lookup costs on each failure after the first for a project.

    python bench/nearest_release.py [--runs 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from builder.config import DEFAULT_UPSTREAM  # noqa: E402
from builder.nearest import NearestReleases  # noqa: E402
from builder.records import BuildStore  # noqa: E402
from builder.targets import BuildTarget  # noqa: E402
from builder.upstream import SimpleIndex  # noqa: E402
from server.embedded_redis import EmbeddedRedis  # noqa: E402

TARGET = BuildTarget.parse("cp313-manylinux_x86_64")
# Pinned releases that upstream has no cp313 wheel for (each from before CPython 3.13).
RELEASES = [
    ("numpy", "1.26.4"),
    ("pandas", "2.1.4"),
    ("scipy", "1.11.4"),
    ("lxml", "4.9.3"),
    ("pillow", "10.0.1"),
    ("psycopg2-binary", "2.9.9"),
    ("pyyaml", "6.0.1"),
    ("aiohttp", "3.9.5"),
    ("msgpack", "1.0.7"),
    ("grpcio", "1.60.0"),
    ("orjson", "3.9.10"),
    ("pydantic-core", "2.14.6"),
]


def median_seconds(action: object, runs: int, before: object = None) -> float:
    times = []
    for _ in range(runs):
        if callable(before):
            before()
        start = time.perf_counter()
        assert callable(action)
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="wheelyard-bench-nearest-"))
    try:
        with EmbeddedRedis(root / "redis", tcp=True) as embedded:
            store = BuildStore(redis.Redis.from_url(embedded.url))
            finder = NearestReleases(store, SimpleIndex(DEFAULT_UPSTREAM), ttl=600, glibc_max=(2, 28))
            print(f"{'release':<26} {'newer':<24} {'older':<24} {'upstream ms':>11} {'cached ms':>10}")
            total_upstream = total_cached = 0.0
            for name, version in RELEASES:

                def lookup(name: str = name, version: str = version) -> object:
                    return finder.for_build(name, version, TARGET.identifier)

                def forget(name: str = name) -> None:
                    store.redis.delete(finder.cache_key(name, TARGET))

                upstream = median_seconds(lookup, args.runs, forget)
                cached = median_seconds(lookup, args.runs)
                found = finder.for_build(name, version, TARGET.identifier) or {}
                sides = [
                    f"{found[s]['version']} ({found[s]['source']})" if found.get(s) else "-" for s in ("newer", "older")
                ]
                print(
                    f"{name + '==' + version:<26} {sides[0]:<24} {sides[1]:<24} "
                    f"{upstream * 1000:>11.1f} {cached * 1000:>10.2f}"
                )
                total_upstream += upstream
                total_cached += cached
            print(
                f"total: upstream {total_upstream * 1000:.0f} ms, cached {total_cached * 1000:.1f} ms; "
                f"cached/upstream = {total_cached / total_upstream:.4f}"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
