"""The worker's side of a build, without Celery: take a record, run the director, store the outcome.

``run_build`` is what the Celery task calls; it is a plain function so that tests and
other runners can call it too.

Redis may go away while a build runs (a restart, a failover). A build does not fail for that:
its progress (step, log chunks) is written best effort, the log is written again whole from the
worker's file once Redis answers, and the records that matter (the start of an attempt, the
outcome) are retried until Redis is back (``REDIS_RETRY_SECONDS``). Were the outcome lost, the
job would be acknowledged while its record still said "building", and nothing would ever run
it again.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import redis

from builder.buildlog import StoredLog, stored_form
from builder.capabilities import Capabilities
from builder.config import Settings
from builder.pipeline import BuildDirector, BuildJob, BuildLog, BuildOutcome, work_directory
from builder.records import DONE, BuildRecord, BuildStore
from builder.sandbox import remove_stale_cgroups
from builder.targets import BuildTarget
from builder.tasks import MIRROR_QUEUE

logger = logging.getLogger(__name__)

# Errors of a Redis that is away (refused, reset, timed out, still loading its AOF): worth waiting for.
REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError)
# How long a worker keeps trying to write a build's record while Redis is away.
REDIS_RETRY_SECONDS = 600.0
# After a failed best-effort write, how long progress writes are skipped (they must not stall a build).
PROGRESS_BACKOFF_SECONDS = 5.0

T = TypeVar("T")


def retry_redis(action: Callable[[], T], what: str, seconds: float = REDIS_RETRY_SECONDS) -> T:
    """``action()``, tried again with backoff while Redis is unreachable, for up to ``seconds``."""
    deadline = time.monotonic() + seconds
    delay = 0.5
    while True:
        try:
            return action()
        except REDIS_DOWN as exc:
            if time.monotonic() + delay > deadline:
                raise
            logger.warning("%s: Redis unavailable (%s); trying again in %.1f s", what, exc.__class__.__name__, delay)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


def record_outcome(store: BuildStore, build_id: str, **changes: Any) -> BuildRecord:
    """Write a build's outcome, waiting for Redis if it is away."""
    return retry_redis(lambda: store.update(build_id, **changes), f"build {build_id}: recording the outcome")


class Progress:
    """A build's step and log chunks, written to Redis best effort: a Redis outage never holds up or
    fails a build. Once a write fails, writes are skipped for a while; ``log_lost`` tells that the
    log in Redis misses chunks and must be written again from the file."""

    def __init__(self, store: BuildStore, build_id: str, stored: StoredLog | None = None) -> None:
        self.store = store
        self.build_id = build_id
        self.log_lost = False
        self._skip_until = 0.0
        # The record keeps the log's head (written as it comes) and its tail (written at the end).
        self.stored = stored or StoredLog()

    def _try(self, action: Callable[[], object]) -> bool:
        if time.monotonic() < self._skip_until:
            return False
        try:
            action()
            return True
        except REDIS_DOWN as exc:
            logger.warning("build %s: progress not recorded, Redis unavailable (%s)", self.build_id, exc)
            self._skip_until = time.monotonic() + PROGRESS_BACKOFF_SECONDS
            return False

    def step(self, step: str, info: dict[str, Any]) -> None:
        self._try(lambda: self.store.update(self.build_id, step=step))

    def log(self, data: bytes) -> None:
        head = self.stored.take(data)
        if head and not self._try(lambda: self.store.append_log(self.build_id, head)):
            self.log_lost = True

    def finish_log(self, path: Path) -> None:
        """Write the end of the stored log; the whole of it again from the file if chunks were lost."""
        if self.log_lost:
            # Chunks were lost while Redis was away: the file on this worker has the whole log.
            data = stored_form(path, self.stored.head, self.stored.tail)
            retry_redis(lambda: self.store.replace_log(self.build_id, data), f"build {self.build_id}: writing the log")
            return
        ending = self.stored.ending()
        if ending:
            retry_redis(lambda: self.store.append_log(self.build_id, ending), f"build {self.build_id}: writing the log")


def run_build(
    settings: Settings,
    store: BuildStore,
    capabilities: Capabilities,
    build_id: str,
    *,
    worker_name: str,
    upload_password: str | None = None,
) -> BuildOutcome | None:
    """Run one build; None when the record is gone or already finished (a redelivered job)."""
    record = retry_redis(lambda: store.get(build_id), f"build {build_id}: reading the record")
    if record is None or record.status in DONE:
        return None
    attempts = record.attempts + 1

    def start() -> None:
        store.clear_log(build_id)
        store.update(
            build_id,
            status="building",
            step="start",
            started_at=time.time(),
            worker=worker_name,
            attempts=attempts,
            finished_at=None,
            error=None,
            diagnosis=None,
        )

    retry_redis(start, f"build {build_id}: recording the start")
    # A pool process killed mid-build (kill -9, time limit) leaves its cgroups behind.
    remove_stale_cgroups()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    workroot = settings.data_dir / "work"
    workroot.mkdir(exist_ok=True)
    workdir = work_directory(workroot)
    progress = Progress(store, build_id, StoredLog(settings.log_head_bytes, settings.log_tail_bytes))
    log = BuildLog(workdir / "build.log", sink=progress.log)
    job = BuildJob(
        build_id=build_id,
        name=record.name,
        version=record.version,
        target=BuildTarget.parse(record.target),
        from_source=record.from_source,
    )

    try:
        director = BuildDirector(
            settings,
            capabilities,
            job,
            workdir=workdir,
            log=log,
            report=progress.step,
            upload_password=upload_password,
        )
        outcome = director.run()
        changes: dict[str, Any] = {
            "status": outcome.status,
            "step": None,
            "finished_at": time.time(),
            "wheel": outcome.wheel,
            "sha256": outcome.sha256,
            "source": outcome.source,
            "error": outcome.error,
            "timings": outcome.timings,
        }
        if outcome.status == "failed":
            from builder.diagnosis import RULESET_VERSION

            diagnosis = diagnose_log(log.path)
            try:
                fingerprint = store.capabilities_for(record.queue) or capabilities.fingerprint()
            except REDIS_DOWN:
                fingerprint = capabilities.fingerprint()
            changes.update(diagnosis=diagnosis, ruleset=RULESET_VERSION, capabilities=fingerprint)
            primary = (diagnosis or {}).get("primary") or {}
            log.line(
                f"wheelyard: diagnosis: {primary.get('category', 'unknown')} ({primary.get('rule', '-')})"
                f" at line {primary.get('line', '-')}: {primary.get('detail') or primary.get('explanation') or ''}"
            )
        progress.finish_log(log.path)
        record_outcome(store, build_id, **changes)
        return outcome
    finally:
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


def diagnose_log(path: Path) -> dict[str, Any] | None:
    from builder.diagnosis import diagnose

    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            return diagnose(fh).to_dict()
    except Exception:  # noqa: BLE001 - a diagnosis must never lose the build record
        logger.exception("diagnosis of %s failed", path)
        return None


class Heartbeat:
    """Keeps the worker's registration (its queues and capabilities) alive in Redis while it runs."""

    def __init__(self, store: BuildStore, name: str, info: dict[str, Any], interval: float = 10.0) -> None:
        self.store = store
        self.name = name
        self.info = info
        self.interval = interval
        self._failing = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="wheelyard-heartbeat", daemon=True)

    def start(self) -> None:
        self._beat()
        self._thread.start()

    def _beat(self) -> None:
        try:
            self.store.register_worker(self.name, self.info, ttl=int(self.interval * 3))
        except Exception as exc:  # noqa: BLE001 - Redis may be away for a while; keep trying
            self._failing = True
            logger.warning("worker registration failed: %s", exc)
        else:
            if self._failing:
                self._failing = False
                logger.warning("worker registration restored")

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._beat()

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):  # Redis may be gone already; the key expires anyway
            self.store.unregister_worker(self.name)


def default_worker_name() -> str:
    import os

    return f"wheelyard-{os.getpid()}@{socket.gethostname()}"


def worker_queues(targets: Sequence[BuildTarget]) -> list[str]:
    """A worker's queues: one per target it builds, and the mirror queue every worker serves."""
    return [t.queue for t in targets] + [MIRROR_QUEUE]


def worker_info(capabilities: Capabilities, targets: Sequence[BuildTarget]) -> dict[str, Any]:
    """What a worker registers: the API reads queues from it to tell who serves a target."""
    return {
        "queues": worker_queues(targets),
        "targets": [t.identifier for t in targets],
        "fingerprint": capabilities.fingerprint(),
        "capabilities": capabilities.to_dict(),
        "started_at": time.time(),
    }
