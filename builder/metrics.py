"""Prometheus metrics of wheelyard's processes, declared once (``metrics()``).

Counters and histograms are incremented where their event happens: a build's outcome in the
worker (``observe_build``), a retry where it is decided, an upload in the index, an index
request in the API's demand route. A worker's builds run in Celery's pool processes and the
index has two processes, so every service runs in prometheus_client's multiprocess mode: each
process writes its values to files in the service's directory (``PROMETHEUS_MULTIPROC_DIR``:
``DATA_DIR/metrics/SERVICE`` unless set, emptied when the service starts) and the service's
``/metrics`` adds them up. Gauges of the shared state (queue depth, live workers) are not
kept by any process: the API computes them from Redis at each scrape (server/metrics.py).

Labels are bounded: a target is a build identifier (the worker set bounds them), a category
is a diagnosis rule set's, a remedy a name of the remedies' table, an outcome one of a few
words. A package name is never a label.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder.errors import ConfigurationError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Histogram

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
NO_REMEDY = "none"
UNDIAGNOSED = "undiagnosed"
BUILD_SECONDS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
QUEUE_WAIT_SECONDS = (0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0)
STEP_SECONDS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0)


def prepare_multiprocess_dir(data_dir: Path, service: str) -> Path:
    """Point this process (and its children) at the service's metrics directory, emptied: the
    values of processes of an earlier run are not this run's. Call it before anything imports
    prometheus_client (it reads the variable once, at import)."""
    given = os.environ.get(MULTIPROC_ENV)
    path = Path(given) if given else data_dir / "metrics" / service
    if path.exists():
        for entry in path.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
    path.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(path)
    return path


@dataclass(frozen=True)
class Metrics:
    builds: Counter
    build_duration: Histogram
    queue_wait: Histogram
    step_duration: Histogram
    failures: Counter
    retries: Counter
    publishes: Counter
    uploads: Counter
    index_requests: Counter


_MADE: list[Metrics] = []
_MAKING = threading.Lock()


def metrics() -> Metrics:
    """The metrics, made once per process (after ``prepare_multiprocess_dir``, where there is one);
    under a lock: two threads making them at once would register every name twice."""
    if not _MADE:
        with _MAKING:
            if not _MADE:
                _MADE.append(_make())
    return _MADE[0]


def _make() -> Metrics:
    from prometheus_client import Counter, Histogram

    return Metrics(
        builds=Counter(
            "wheelyard_builds",
            "Builds finished, by outcome (published: built here; mirrored: an upstream wheel; failed), "
            "target and the remedy that made the wheel",
            ["outcome", "target", "remedy"],
        ),
        build_duration=Histogram(
            "wheelyard_build_duration_seconds",
            "Seconds from a build's start on a worker to its outcome",
            ["outcome", "target"],
            buckets=BUILD_SECONDS,
        ),
        queue_wait=Histogram(
            "wheelyard_queue_wait_seconds",
            "Seconds a build waited in its queue before a worker started it (its first attempt)",
            ["queue"],
            buckets=QUEUE_WAIT_SECONDS,
        ),
        step_duration=Histogram(
            "wheelyard_build_step_duration_seconds",
            "Seconds each step of a build took",
            ["step"],
            buckets=STEP_SECONDS,
        ),
        failures=Counter(
            "wheelyard_build_failures",
            "Failed builds by the category of their diagnosis (undiagnosed: none found), the error's "
            "reference (build-failed, internal-error, task-time-limit, ...) and target",
            ["category", "error", "target"],
        ),
        retries=Counter(
            "wheelyard_build_retries",
            "Builds run again, by why: upstream-unavailable (Celery's retry), worker-lost (recovered), "
            "requested (a retry of a failed build), remedy (another attempt with a remedy)",
            ["reason"],
        ),
        publishes=Counter(
            "wheelyard_publishes",
            "Wheels a worker uploaded to the index, by outcome (uploaded, already-on-index)",
            ["outcome"],
        ),
        uploads=Counter(
            "wheelyard_index_uploads",
            "Uploads the index answered, by outcome (published, exists, rejected, invalid, unauthorized)",
            ["outcome"],
        ),
        index_requests=Counter(
            "wheelyard_index_requests",
            "Project pages clients asked the index for, by outcome (hit, miss, ignored: no target in the "
            "client's User-Agent) and the client's target",
            ["outcome", "target"],
        ),
    )


def observe_build(record: Any, changes: dict[str, Any]) -> None:
    """Count a build's outcome (``changes``: the fields its outcome sets on ``record``)."""
    outcome = str(changes.get("status"))
    target = str(record.target)
    remedy = changes.get("remedy") or getattr(record, "remedy", None) or NO_REMEDY
    found = metrics()
    found.builds.labels(outcome, target, str(remedy)).inc()
    if record.started_at is not None and changes.get("finished_at") is not None:
        found.build_duration.labels(outcome, target).observe(max(0.0, changes["finished_at"] - record.started_at))
    for step, seconds in (changes.get("timings") or {}).items():
        found.step_duration.labels(str(step)).observe(max(0.0, float(seconds)))
    if outcome == "failed":
        primary = (changes.get("diagnosis") or {}).get("primary") or {}
        error = str((changes.get("error") or {}).get("error") or "unknown")
        found.failures.labels(str(primary.get("category") or UNDIAGNOSED), error, target).inc()


def observe_start(record: Any, started_at: float) -> None:
    """Count a build's wait in its queue, at the start of its first attempt (a later attempt
    was queued again at a time the record does not keep)."""
    if not record.runs and record.created_at:
        metrics().queue_wait.labels(str(record.queue)).observe(max(0.0, started_at - record.created_at))


def count_retry(reason: str) -> None:
    metrics().retries.labels(reason).inc()


def registry() -> CollectorRegistry:
    """What a service's ``/metrics`` shows: every process of its multiprocess directory, or this
    process's own metrics where there is none."""
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    if not os.environ.get(MULTIPROC_ENV):
        return REGISTRY
    combined = CollectorRegistry()
    MultiProcessCollector(combined)  # type: ignore[no-untyped-call]
    return combined


def serve_metrics(host: str, port: int) -> str:
    """Serve ``registry()`` at ``http://host:port/metrics`` from a thread; the URL (port 0: a free one)."""
    from prometheus_client import start_http_server

    try:
        server, _ = start_http_server(port, addr=host, registry=registry())
    except OSError as exc:
        raise ConfigurationError(
            f"cannot serve /metrics on {host}:{port}: {exc.strerror or exc}",
            "set WHEELYARD_METRICS_HOST to an address of this host, and the metrics port to a free port "
            "(0: any free one)",
        ) from None
    shown = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
    return f"http://{shown}:{server.server_port}/metrics"
