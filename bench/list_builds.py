"""A filtered ``GET /api/builds`` over N records: the store's indexes against scanning and filtering.

Starts an embedded Redis of its own (TCP on a free port of 127.0.0.1, so no database of the
machine's Redis is touched), writes N records as ``BuildStore`` writes them (the record and
every index it belongs in, ``builder.records.index_keys``; batched in pipelines), then times in
the same run, for a few filters, the median of RUNS listings of one page (limit 100):

* ``index``: ``server.service.find_builds``, what the API answers with now;
* ``scan 2000``: the old code: the newest 2000 records read, then filtered in Python (it
  finds only the matches among those 2000: the "found" column says how many);
* ``scan all``: the same scan over every record, what a correct scan-and-filter costs.

Both sides present the records they return as the API does (``server.service.present``) and
ask the registry of workers which queues are served; that lookup is timed apart, against the
SCAN of every key for ``wheelyard:worker:*`` it replaced.

    python bench/list_builds.py [--records N] [--runs R]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from packaging.utils import canonicalize_name  # noqa: E402

from builder.records import PREFIX, BuildRecord, BuildStore, index_keys  # noqa: E402
from server.embedded_redis import EmbeddedRedis  # noqa: E402
from server.service import find_builds, present  # noqa: E402

LIMIT = 100
TARGETS = [
    "cp312-manylinux_x86_64",
    "cp311-manylinux_x86_64",
    "cp312-manylinux_aarch64",
    "cp313-manylinux_x86_64",
    "cp312-musllinux_x86_64",
    "py3-none-any",
]
STATUSES = ["published"] * 80 + ["mirrored"] * 10 + ["failed"] * 8 + ["queued", "building"]
SERVED = {f"wheelyard.{t}": ["worker"] for t in TARGETS[:4]}


def write_records(client: redis.Redis, count: int, rng: random.Random) -> None:
    """``count`` records as ``BuildStore`` writes them: the record and each of its indexes."""
    start = time.time() - count
    pipe = client.pipeline(transaction=False)
    for n in range(count):
        target = rng.choice(TARGETS)
        name = f"project-{rng.randrange(1000):03d}"
        record = BuildRecord(
            id=f"{n:016x}",
            name=name,
            version=f"1.{n % 50}",
            target=target,
            requirement=f"{name}==1.{n % 50}",
            queue=f"wheelyard.{target}",
            status=rng.choice(STATUSES),
            created_at=start + n,
            started_at=start + n + 1,
            finished_at=start + n + 30,
            worker="worker@bench",
            runs=1,
            timings={"download": 0.4, "build": 20.1, "verify": 0.2, "publish": 0.1},
        )
        pipe.set(f"{PREFIX}build:{record.id}", record.to_json())
        for index in index_keys(record):
            pipe.zadd(index, {record.id: record.created_at})
        if n % 2000 == 1999:
            pipe.execute()
    pipe.execute()


def scan(store: BuildStore, cap: int | None, name: str | None, status: str | None, target: str | None) -> list[Any]:
    """The old ``list_builds``: newest first, filtered in Python, over ``cap`` records (None: all)."""
    served = store.served_queues()
    wanted = canonicalize_name(name) if name else None
    out = []
    for record in _newest(store, cap):
        view = present(record, served, "http://bench")
        if wanted and record.name != wanted:
            continue
        if status and view["status"] != status:
            continue
        if target and record.target != target:
            continue
        out.append(view)
        if len(out) >= LIMIT:
            break
    return out


def _newest(store: BuildStore, cap: int | None) -> Iterator[BuildRecord]:
    if cap is not None:
        yield from store.records(limit=cap)
        return
    offset = 0
    while True:
        page = list(store.records(limit=2000, offset=offset))
        if not page:
            return
        yield from page
        offset += 2000


def scanned_workers(client: redis.Redis) -> list[Any]:
    """The old ``BuildStore.workers``: a SCAN of every key for ``wheelyard:worker:*``."""
    out = []
    for key in client.scan_iter(f"{PREFIX}worker:*"):
        raw = client.get(key)
        if raw:
            out.append(json.loads(raw))
    return out


def indexed(store: BuildStore, name: str | None, status: str | None, target: str | None) -> list[Any]:
    served = store.served_queues()
    records, _ = find_builds(store, served, name=name, status=status, target=target, limit=LIMIT)
    return [present(r, served, "http://bench") for r in records]


def median_time(runs: int, fn: Callable[..., list[Any]], *args: Any) -> tuple[float, int]:
    """The median time of ``fn(*args)`` over ``runs`` calls, and how many builds it found."""
    times = []
    found = 0
    for _ in range(runs):
        t = time.perf_counter()
        found = len(fn(*args))
        times.append(time.perf_counter() - t)
    return statistics.median(times), found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="wheelyard-bench-list-"))
    try:
        with EmbeddedRedis(base, tcp=True) as server:
            client = redis.Redis.from_url(server.url)
            store = BuildStore(client)
            for queue in SERVED:
                store.register_worker(f"worker-{queue}", {"queues": [queue]}, ttl=3600)
            t = time.perf_counter()
            write_records(client, args.records, random.Random(1))
            print(f"records : {args.records} written with their indexes in {time.perf_counter() - t:.1f} s")
            memory = client.info("memory")["used_memory"]
            print(f"redis   : {memory / 1024**2:.0f} MB used with the indexes")

            queries: list[tuple[str, dict[str, str | None]]] = [
                ("no filter", {}),
                ("status=failed", {"status": "failed"}),
                ("name=project-007", {"name": "project-007"}),
                ("name=project-007&status=failed", {"name": "project-007", "status": "failed"}),
                ("status=waiting-for-worker", {"status": "waiting-for-worker"}),
                ("target=py3-none-any&status=queued", {"target": "py3-none-any", "status": "queued"}),
            ]
            print(f"\none page (limit {LIMIT}), median of {args.runs} runs; found = builds on the page")
            print(
                f"{'filter':36} {'index':>10} {'scan 2000':>16} {'scan all':>16} {'2000/index':>11} {'all/index':>10}"
            )
            for label, q in queries:
                name, status, target = q.get("name"), q.get("status"), q.get("target")
                t_index, n_index = median_time(args.runs, indexed, store, name, status, target)
                t_old, n_old = median_time(args.runs, scan, store, 2000, name, status, target)
                t_all, n_all = median_time(max(1, args.runs // 2), scan, store, None, name, status, target)
                assert n_index == n_all, (label, n_index, n_all)
                print(
                    f"{label:36} {t_index * 1000:7.1f} ms {t_old * 1000:7.1f} ms ({n_old:3d}) "
                    f"{t_all * 1000:7.0f} ms ({n_all:3d}) {t_old / t_index:10.1f}x {t_all / t_index:9.1f}x"
                )
            print("(found: the index's page always holds what the full scan finds; 'scan 2000' misses the rest)")

            # Every listing also asks which queues live workers serve: the registry against the old SCAN.
            t_registry, _ = median_time(args.runs, lambda: list(store.served_queues()))
            t_keyspace, _ = median_time(args.runs, scanned_workers, client)
            print(
                f"\nserved queues (every listing): registry {t_registry * 1000:.2f} ms, "
                f"SCAN of the keyspace (before) {t_keyspace * 1000:.1f} ms: {t_keyspace / t_registry:.0f}x"
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
