"""``GET /metrics`` of the API (Prometheus' text format) and ``GET /api/metrics/targets``.

What the API's processes counted (builder/metrics.py, multiprocess mode), and gauges of the
state every process shares, computed from Redis at each scrape by ``StateCollector``: builds
by status, the queued builds of each queue and how long the oldest has waited, the messages
in each broker queue, live workers and the targets they serve. A scrape reads the sizes of the
store's indexes and the worker registrations (a few pipelined round trips, whatever the number
of builds), never a record.

``/api/metrics/targets`` is Prometheus' HTTP service discovery: every live worker's /metrics,
with its name as a label, so that a worker started anywhere is scraped without configuration.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import redis
from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from builder.metrics import registry
from builder.records import PREFIX, STATUSES, BuildStore, queued_index, status_index
from builder.targets import MIRROR_QUEUE, PURE, BuildTarget, known_identifiers

logger = logging.getLogger(__name__)

# kombu's Redis transport keeps a queue's messages of priority 0 under its name and the others
# under NAME + "\x06\x16" + priority, for its default priority steps.
_PRIORITY_KEYS = ("", "\x06\x163", "\x06\x166", "\x06\x169")
MISSES = f"{PREFIX}misses"


def all_queues() -> list[str]:
    """Every queue a build can be sent to: one per build identifier, the pure one's and the mirror queue."""
    identifiers = {*known_identifiers(), PURE}
    return sorted({BuildTarget.parse(i).queue for i in identifiers} | {MIRROR_QUEUE})


class StateCollector(Collector):
    """Gauges of what Redis holds now, read at each scrape."""

    def __init__(self, store: BuildStore) -> None:
        self.store = store
        self.queues = all_queues()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            yield from self._gauges()
        except redis.RedisError as exc:
            logger.warning("metrics: Redis unavailable (%s); state gauges left out of this scrape", exc)
            up = GaugeMetricFamily("wheelyard_redis_up", "Whether Redis answered this scrape")
            up.add_metric([], 0)
            yield up

    def _gauges(self) -> Iterator[GaugeMetricFamily]:
        workers = self.store.workers()
        served: dict[str, int] = {}
        for info in workers.values():
            for queue in info.get("queues", []):
                served[queue] = served.get(queue, 0) + 1
        queues = sorted(set(self.queues) | set(served))
        statuses = [s for s in STATUSES if s != "waiting-for-worker"]
        pipe = self.store.redis.pipeline(transaction=False)
        for status in statuses:
            pipe.zcard(status_index(status))
        for queue in queues:
            pipe.zcard(queued_index(queue))
            pipe.zrange(queued_index(queue), 0, 0, withscores=True)
        pipe.zcard(MISSES)
        pipe.time()
        results = pipe.execute()
        by_status = dict(zip(statuses, results[: len(statuses)], strict=True))
        rest = results[len(statuses) :]
        queued = {q: (int(rest[2 * i]), rest[2 * i + 1]) for i, q in enumerate(queues)}
        misses, (seconds, micros) = rest[-2], rest[-1]
        now = float(seconds) + float(micros) / 1e6
        shown = sorted(set(served) | {q for q, (n, _) in queued.items() if n})
        yield from self._build_gauges(by_status, int(misses))
        yield from self._queue_gauges(shown, queued, served, now)
        yield from self._worker_gauges(workers)

    def _build_gauges(self, by_status: dict[str, Any], misses: int) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("wheelyard_redis_up", "Whether Redis answered this scrape")
        up.add_metric([], 1)
        yield up
        builds = GaugeMetricFamily("wheelyard_builds", "Builds by the status their record holds", labels=["status"])
        for status, count in by_status.items():
            builds.add_metric([status], int(count))
        yield builds
        missed = GaugeMetricFamily("wheelyard_misses", "(project, target) pairs clients asked for and did not get")
        missed.add_metric([], misses)
        yield missed

    def _queue_gauges(
        self, shown: list[str], queued: dict[str, tuple[int, Any]], served: dict[str, int], now: float
    ) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily("wheelyard_queue_depth", "Builds queued in each queue", labels=["queue"])
        oldest = GaugeMetricFamily(
            "wheelyard_queue_oldest_age_seconds",
            "Seconds since the oldest queued build of each queue was asked for",
            labels=["queue"],
        )
        serving = GaugeMetricFamily("wheelyard_queue_workers", "Live workers serving each queue", labels=["queue"])
        messages = GaugeMetricFamily(
            "wheelyard_broker_messages", "Messages waiting in each queue of the broker", labels=["queue"]
        )
        pipe = self.store.redis.pipeline(transaction=False)
        for queue in shown:
            for suffix in _PRIORITY_KEYS:
                pipe.llen(queue + suffix)
        lengths = pipe.execute() if shown else []
        for i, queue in enumerate(shown):
            count, first = queued[queue]
            depth.add_metric([queue], count)
            oldest.add_metric([queue], max(0.0, now - float(first[0][1])) if count and first else 0.0)
            serving.add_metric([queue], served.get(queue, 0))
            messages.add_metric([queue], sum(int(n) for n in lengths[4 * i : 4 * i + 4]))
        yield from (depth, oldest, serving, messages)

    def _worker_gauges(self, workers: dict[str, dict[str, Any]]) -> Iterator[GaugeMetricFamily]:
        live = GaugeMetricFamily("wheelyard_workers", "Live workers (registered, heartbeat current)")
        live.add_metric([], len(workers))
        yield live
        per_target = GaugeMetricFamily(
            "wheelyard_target_workers", "Live workers building each target", labels=["target"]
        )
        info = GaugeMetricFamily(
            "wheelyard_worker_target", "1 for each target a live worker builds", labels=["worker", "target"]
        )
        counts: dict[str, int] = {}
        for name, registration in sorted(workers.items()):
            for target in registration.get("targets", []):
                counts[target] = counts.get(target, 0) + 1
                info.add_metric([name, target], 1)
        for target, count in sorted(counts.items()):
            per_target.add_metric([target], count)
        yield per_target
        yield info


def metrics_router(store: BuildStore) -> APIRouter:
    router = APIRouter(tags=["operations"])
    combined = CollectorRegistry()
    combined.register(_Processes())
    combined.register(StateCollector(store))

    @router.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
    )
    def scrape() -> Response:
        """Prometheus' text format: the API's counters and the shared state's gauges."""
        return Response(generate_latest(combined), media_type=CONTENT_TYPE_LATEST)

    @router.get("/api/metrics/targets")
    def targets() -> list[dict[str, Any]]:
        """Prometheus HTTP service discovery: the /metrics of every live worker."""
        found = []
        for name, info in sorted(store.workers().items()):
            url = str(info.get("metrics") or "")
            if url.startswith("http://") and url.endswith("/metrics"):
                found.append({"targets": [url[len("http://") : -len("/metrics")]], "labels": {"worker": name}})
        return found

    return router


class _Processes(Collector):
    """What this service's processes counted (their multiprocess files, or this process)."""

    def __init__(self) -> None:
        self.source = registry()

    def collect(self) -> Iterator[Any]:
        yield from self.source.collect()
