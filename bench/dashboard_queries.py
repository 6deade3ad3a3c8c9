"""The dashboard's operator panels over N build records: their queries against a scan of every record.

Starts an embedded Redis of its own (TCP on a free port of 127.0.0.1, so no database of the
machine's Redis is touched) and writes N records through the store's layout (each record
and its indexes, in pipelines): most published or mirrored, some failed, queued and
building, 0.5% waiting for a capability, 1% made by a remedy; watch lists whose closures
name some of them (a few wheels missing each); 10,000 recorded misses. Then it times, in
the same run, the median of RUNS calls of each panel's query as the API answers it:

* ``readiness``: ``server.watch.readiness.current_readiness`` (one HGETALL, one MGET of the
  missing wheels' builds);
* ``waiting for a capability`` and ``made by a remedy``: ``server.dashboard.panel`` (the
  status index of "waiting-for-capability" and the index of remedied builds);
* ``misses``: ``MissStore.newest(50)``;

against ``scan``: every record read (MGET in chunks of 1000) and the same panels computed
from them in Python, the query a store without these indexes would need.

    python bench/dashboard_queries.py [--records N] [--runs R]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from bench._records import bench_store, median_time  # noqa: E402
from builder.records import ALL_BUILDS, PREFIX, REMEDIED, BuildRecord, index_keys  # noqa: E402
from server.dashboard import WAITING, panel  # noqa: E402
from server.misses.misses import MissStore  # noqa: E402
from server.watch.readiness import READINESS, current_readiness  # noqa: E402

TARGETS = ["cp312-manylinux_x86_64", "cp311-manylinux_x86_64", "cp313-manylinux_x86_64", "py3-none-any"]
STATUSES = ["published"] * 80 + ["mirrored"] * 12 + ["failed"] * 6 + ["queued", "building"]
CAPABILITIES = ["tool:gfortran", "lib:portaudio", "tool:swig", "header:fftw3.h", "tool:rust>=1.70"]
REMEDIES = ["cython-regenerate", "setuptools-pin", "numpy-oldest", "no-isolation"]
LISTS, CLOSURE, MISSING = 5, 150, 10
SERVED = {f"wheelyard.{t}": ["worker"] for t in TARGETS[:3]}


def write_records(client: redis.Redis, count: int, rng: random.Random) -> list[dict[str, Any]]:
    """``count`` records with their indexes; those the watch lists name, as raw records."""
    start = time.time() - count
    pipe = client.pipeline(transaction=False)
    named = []
    for n in range(count):
        target = rng.choice(TARGETS)
        status = rng.choice(STATUSES)
        extra: dict[str, Any] = {}
        if n % 200 == 7:
            status, extra["missing_capability"] = WAITING, rng.choice(CAPABILITIES)
        elif n % 100 == 3:
            status, extra["remedy"] = "published", rng.choice(REMEDIES)
        record = BuildRecord(
            id=f"{n:016x}",
            name=f"project-{rng.randrange(5000):04d}",
            version=f"1.{n % 50}",
            target=target,
            requirement="x",
            queue=f"wheelyard.{target}",
            status=status,
            created_at=start + n,
            finished_at=start + n + 30,
            worker="worker@bench",
            timings={"download": 0.4, "build": 20.1},
        )
        raw = json.loads(record.to_json()) | extra  # the routing's and the remedies' fields
        pipe.set(f"{PREFIX}build:{record.id}", json.dumps(raw))
        for key in index_keys(record) | ({REMEDIED} if "remedy" in extra else set()):
            pipe.zadd(key, {record.id: record.created_at})
        if n < LISTS * len(TARGETS[:3]) * MISSING:
            named.append(raw)
        if n % 2000 == 1999:
            pipe.execute()
    pipe.execute()
    return named


def write_watch_lists(client: redis.Redis, named: list[dict[str, Any]]) -> None:
    builds = iter(named)
    for number in range(LISTS):
        targets = {}
        for target in TARGETS[:3]:
            missing = []
            for _ in range(MISSING):
                r = next(builds)
                missing.append({"name": r["name"], "version": r["version"], "wheel_target": target,
                                "outcome": "queued", "build_id": r["id"], "category": None,
                                "explanation": None, "capability": None})  # fmt: skip
            targets[target] = {"total": CLOSURE, "on_index": CLOSURE - MISSING, "missing": missing, "error": None}
        client.hset(
            READINESS, f"list-{number}", json.dumps({"name": f"list-{number}", "at": time.time(), "targets": targets})
        )


def scan(client: redis.Redis) -> dict[str, Any]:
    """Every record read, and the panels computed from them."""
    waiting: Counter[str] = Counter()
    remedied: Counter[str] = Counter()
    status: dict[str, str] = {}
    ids = [i.decode() for i in client.zrevrange(ALL_BUILDS, 0, -1)]
    for at in range(0, len(ids), 1000):
        for raw in client.mget([f"{PREFIX}build:{i}" for i in ids[at : at + 1000]]):
            r = json.loads(raw)
            status[r["id"]] = r["status"]
            if r["status"] == WAITING:
                waiting[r.get("missing_capability") or "unknown"] += 1
            if r.get("remedy"):
                remedied[r["remedy"]] += 1
    lists = [json.loads(v) for v in client.hgetall(READINESS).values()]
    for readiness in lists:
        for state in readiness["targets"].values():
            state["missing"] = [
                m for m in state["missing"] if status.get(m["build_id"]) not in ("published", "mirrored")
            ]
    return {"waiting": waiting, "remedied": remedied, "lists": lists}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with bench_store("wheelyard-bench-dashboard-", SERVED) as store:
        client = store.redis
        t = time.perf_counter()
        write_watch_lists(client, write_records(client, args.records, random.Random(1)))
        misses = MissStore(client)
        for n in range(10_000):
            misses.record(f"absent-{n}", TARGETS[n % 3], "no-project")
        took = time.perf_counter() - t
        print(f"records : {args.records} (+ {LISTS} watch lists, 10000 misses) written in {took:.1f} s")
        served = store.served_queues()
        panels: list[tuple[str, Callable[[], Any]]] = [
            ("readiness", lambda: current_readiness(client, served)),
            (
                "waiting for a capability",
                lambda: panel(client, f"{PREFIX}idx:status:{WAITING}", "missing_capability", 50),
            ),
            ("made by a remedy", lambda: panel(client, REMEDIED, "remedy", 50)),
            ("misses (newest 50)", lambda: misses.newest(50)),
        ]
        t_scan, scanned = median_time(max(1, args.runs // 2), lambda: scan(client))
        print(f"\nmedian of {args.runs} runs; scan: every record read and the panels computed from them")
        print(f"{'panel':28} {'query':>10} {'scan':>10} {'scan/query':>11}")
        total = 0.0
        for label, query in panels:
            t_query, result = median_time(args.runs, query)
            total += t_query
            print(f"{label:28} {t_query * 1000:7.2f} ms {t_scan * 1000:7.0f} ms {t_scan / t_query:10.0f}x")
            if label.startswith("waiting"):
                assert result["total"] == sum(scanned["waiting"].values()), (result["total"], scanned["waiting"])
                assert result["counts"] == dict(scanned["waiting"]) or result["counted"] < result["total"]
            if label.startswith("made"):
                assert result["total"] == sum(scanned["remedied"].values())
        print(f"{'all four (one poll)':28} {total * 1000:7.2f} ms {t_scan * 1000:7.0f} ms {t_scan / total:10.0f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
