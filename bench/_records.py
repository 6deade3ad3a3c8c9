"""What the record benchmarks share: a Redis of their own with live workers, and a median timer."""

from __future__ import annotations

import contextlib
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import redis

from builder.records import BuildStore
from server.embedded_redis import EmbeddedRedis


@contextlib.contextmanager
def bench_store(prefix: str, served: Mapping[str, list[str]]) -> Iterator[BuildStore]:
    """A store on an embedded Redis of its own (TCP on a free port of 127.0.0.1, so no database of
    the machine's Redis is touched), with one live worker per queue of ``served``."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        with EmbeddedRedis(base, tcp=True) as server:
            store = BuildStore(redis.Redis.from_url(server.url))
            for queue in served:
                store.register_worker(f"worker-{queue}", {"queues": [queue]}, ttl=3600)
            yield store
    finally:
        shutil.rmtree(base, ignore_errors=True)


def median_time(runs: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    """The median time of ``fn()`` over ``runs`` calls, and what its last call returned."""
    times, result = [], None
    for _ in range(runs):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result
