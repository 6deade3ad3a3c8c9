"""The worker's side of a build, without Celery: take a record, run the director, store the outcome.

``run_build`` is what the Celery task calls; it is a plain function so that tests and
other runners can call it too.

Redis may go away while a build runs (a restart, a failover). A build does not fail for that:
its progress (step, log chunks) is written best effort, the log is written again whole from the
worker's file once Redis answers, and the records that matter (the start of an attempt, the
outcome) are retried until Redis is back (``REDIS_RETRY_SECONDS``). Were the outcome lost, the
job would be acknowledged while its record still said "building", and nothing would ever run
it again.

Every build ends with an outcome: an unexpected exception anywhere in a build is a ``failed``
record (``internal-error``, the traceback in its log). A build whose worker is gone (its
registration expired, or it registered again since the build started: a restart) is put back
in its queue by the next live worker's heartbeat (``LostBuilds``), within about a minute
rather than Celery's visibility timeout. Each such recovery is numbered in the record
(``recoveries``) and the job sent carries the number: the lost worker's own job, redelivered
by Celery much later, is stale and skipped, so the build runs again exactly once. An attempt's
work directory is leased to its process (``builder.workdir``) and swept once that process is
gone.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from builder.attempts import AttemptRetry, Attempts, SendRecovered
from builder.build_job import BuildJob, BuildOutcome
from builder.build_output import BuildLog
from builder.buildlog import StoredLog, stored_form
from builder.capabilities import Capabilities
from builder.config import Settings
from builder.errors import InternalError, RemedyNotApplicable
from builder.logs import set_step, set_target
from builder.metrics import count_retry, observe_build, observe_start
from builder.pipeline import BuildDirector
from builder.records import DONE, BuildRecord, BuildStore, status_index
from builder.redis_retry import REDIS_DOWN, retry_redis
from builder.routing import direct_queue, wait_again
from builder.sandbox import CAUSES, marker_line, remove_stale_cgroups
from builder.settle import cannot_send, record_settled, settle
from builder.targets import MIRROR_QUEUE, BuildTarget
from builder.workdir import WorkDirectory, sweep

logger = logging.getLogger(__name__)

# After a failed best-effort write, how long progress writes are skipped (they must not stall a build).
PROGRESS_BACKOFF_SECONDS = 5.0


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
        set_step(step)
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
    recovery: int = 0,
    send_retry: SendRecovered | None = None,
) -> BuildOutcome | None:
    """Run one attempt of a build; None when the record is gone or already finished (a redelivered
    job), or the job is stale (sent before the build's last recovery, ``recovery`` below the
    record's). A failed attempt whose diagnosis names a remedy that may still be tried is queued
    again through ``send_retry`` (builder/attempts.py), and one that failed for a capability this worker
    lacks goes through it to a worker that has it (builder/routing.py); without it the failure is the outcome."""
    record = retry_redis(lambda: store.get(build_id), f"build {build_id}: reading the record")
    if record is None or record.status in DONE:
        return None
    set_target(record.target)
    started = retry_redis(
        lambda: _start(store, record, worker_name, recovery), f"build {build_id}: recording the start"
    )
    if started is None:
        logger.warning("build %s: this job (recovery %d) is stale or the build is done; skipped", build_id, recovery)
        return None
    observe_start(record, started.started_at or time.time())
    logger.info("build %s: %s %s for %s, run %d", build_id, record.name, record.version, record.target, started.runs)
    # A pool process killed mid-build (kill -9, time limit) leaves its cgroups and work directory behind.
    remove_stale_cgroups()
    sweep(settings.data_dir / "work")

    def mine(r: BuildRecord) -> bool:
        return r.worker == worker_name and r.recoveries == recovery and r.status == "building"

    attempts = Attempts(settings, started, earlier=record)
    entry = attempts.begin()
    retry_redis(
        lambda: store.update_if(build_id, mine, attempts=attempts.entries), f"build {build_id}: recording the attempt"
    )
    outcome, changes = _run_attempt(settings, store, capabilities, record, upload_password, attempts, entry)
    following = attempts.end(outcome, changes)
    if following is not None and send_retry is not None:
        retry = AttemptRetry(store, build_id, mine, send_retry)
        if retry.queue(attempts, following, changes, queue=record.queue, recovery=recovery):
            count_retry("remedy")
            return outcome
    changes.update(attempts=attempts.entries, remedy=entry["remedy"] if outcome.status == "published" else None)
    route = settle(settings, store, record, capabilities, outcome, changes, worker_name)
    if record_settled(store, build_id, mine, route, send_retry or cannot_send) is None:
        return outcome
    set_step(None)
    observe_build(started, changes)
    logger.info("build %s: %s", build_id, outcome.status)
    return outcome


def _start(store: BuildStore, record: BuildRecord, worker_name: str, recovery: int) -> BuildRecord | None:
    """Mark the build as building on this worker, its log cleared; None when it is done or the job
    is stale (the record's recoveries are not the job's)."""
    started = store.update_if(
        record.id,
        lambda r: r.status not in DONE and r.recoveries == recovery,
        status="building",
        step="start",
        started_at=time.time(),
        worker=worker_name,
        runs=record.runs + 1,
        finished_at=None,
        error=None,
        diagnosis=None,
    )
    if started is not None:
        store.clear_log(record.id)
    return started


def _run_attempt(
    settings: Settings,
    store: BuildStore,
    capabilities: Capabilities,
    record: BuildRecord,
    upload_password: str | None,
    attempts: Attempts,
    entry: dict[str, Any],
) -> tuple[BuildOutcome, dict[str, Any]]:
    """One attempt of a build: its own work directory and log, the director, the outcome's changes
    (with ``next_remedy`` when the diagnosis names a remedy that may still be tried)."""
    with WorkDirectory(settings.data_dir / "work") as workdir:
        progress = Progress(store, record.id, StoredLog(settings.log_head_bytes, settings.log_tail_bytes))
        log = BuildLog(workdir.path / "build.log", sink=progress.log)
        try:
            first = attempts.started_line(entry)
            if first:
                log.line(first)
            outcome = _run_director(
                settings, capabilities, record, workdir.path, log, progress, upload_password, entry["remedy"]
            )
            changes = _outcome_changes(outcome, store, record, capabilities, log)
            following = attempts.choose(changes.get("diagnosis")) if outcome.status == "failed" else None
            if following is not None:
                log.line(f"wheelyard: the build is tried again with the remedy {following}")
                changes["next_remedy"] = following
            progress.finish_log(log.path)
            if following is None and isinstance(outcome.error, RemedyNotApplicable):
                # The build's log leads with the failure its error and diagnosis are about.
                store.replace_log(record.id, attempts.earlier_log(store, record.id) + store.read_log(record.id))
        finally:
            log.close()
    return outcome, changes


def _run_director(
    settings: Settings,
    capabilities: Capabilities,
    record: BuildRecord,
    workdir: Path,
    log: BuildLog,
    progress: Progress,
    upload_password: str | None,
    remedy: str | None = None,
) -> BuildOutcome:
    """The build's outcome, whatever happens in it: an exception no step expected is a failed
    build with its traceback in the log, never a record left "building"."""
    try:
        job = BuildJob(
            build_id=record.id,
            name=record.name,
            version=record.version,
            target=BuildTarget.parse(record.target),
            from_source=record.from_source,
            remedy=remedy,
        )
        director = BuildDirector(
            settings, capabilities, job, workdir=workdir, log=log, report=progress.step, upload_password=upload_password
        )
        return director.run()
    except SoftTimeLimitExceeded:
        raise  # the task records it (task-time-limit)
    except Exception as exc:  # noqa: BLE001 - the record must get an outcome
        logger.exception("build %s: unexpected error", record.id)
        log.write(traceback.format_exc().encode())
        error = InternalError(
            f"the build stopped on an unexpected error: {type(exc).__name__}: {exc}",
            "a bug in wheelyard or a problem of the worker's host: the log has the traceback; retry with --retry",
        )
        log.line(f"wheelyard: build failed: {error.message}")
        return BuildOutcome("failed", error=error, log_path=log.path)


def _outcome_changes(
    outcome: BuildOutcome, store: BuildStore, record: BuildRecord, capabilities: Capabilities, log: BuildLog
) -> dict[str, Any]:
    """The fields of the record an outcome sets (a failed build's with its diagnosis)."""
    changes: dict[str, Any] = {
        "status": outcome.status,
        "step": None,
        "finished_at": time.time(),
        "wheel": outcome.wheel,
        "sha256": outcome.sha256,
        "source": outcome.source,
        "error": outcome.error_fields(),
        "timings": outcome.timings,
    }
    if outcome.status != "failed":
        return changes
    from builder.diagnosis import RULESET_VERSION

    diagnosis = limit_diagnosis(changes["error"] or {}, diagnose_log(log.path), _failure_line(log.path))
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
    return changes


def limit_diagnosis(
    error: dict[str, Any], diagnosis: dict[str, Any] | None, line: int | None = None
) -> dict[str, Any] | None:
    """A build stopped at a limit is diagnosed by the limit the sandbox (or the unpacking)
    recorded (``error["cause"]`` and ``error["limit"]``), whatever else its log matched: the
    cause of that limit's marker rule becomes the primary one (``line``: where the log says
    the build failed, for a limit that left no marker in it)."""
    cause, limit = error.get("cause"), str(error.get("limit"))
    if cause not in CAUSES or not limit.isdigit() or diagnosis is None:
        return diagnosis
    from builder.diagnosis import diagnose

    marked = diagnose([marker_line(str(cause), int(limit))]).to_dict()["primary"]
    causes = list(diagnosis.get("causes") or [])
    found = [c for c in causes if c.get("rule") == marked["rule"]]
    if found:
        chosen = found[0]
    else:
        # Not in the log (the sdist was refused before anything ran): the error says it.
        message = error.get("message")
        chosen = {**marked, "line": line, "text": message, "excerpt": message, "excerpt_start": line}
    if (diagnosis.get("primary") or {}).get("rule") == chosen["rule"]:
        return diagnosis
    return {
        **diagnosis,
        "diagnosed": True,
        "primary": chosen,
        "causes": [chosen, *(c for c in causes if c is not chosen)],
    }


def _failure_line(path: Path) -> int | None:
    """The number of the line where the log says the build failed."""
    with contextlib.suppress(OSError), path.open("rb") as fh:
        for number, text in enumerate(fh, 1):
            if text.startswith(b"wheelyard: build failed:"):
                return number
    return None


def diagnose_log(path: Path) -> dict[str, Any] | None:
    from builder.diagnosis import diagnose

    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            return diagnose(fh).to_dict()
    except Exception:  # noqa: BLE001 - a diagnosis must never lose the build record
        logger.exception("diagnosis of %s failed", path)
        return None


class LostBuilds:
    """Puts the builds whose worker is gone back in their queue, each once.

    A build is lost when it says "building" on a worker that is not registered (its
    heartbeat lapsed) or that registered after the build started (a restart under the same
    name). It must be seen so on two checks at least ``grace`` seconds apart: a worker whose
    heartbeat failed only while Redis was away has registered again by then. Claiming it is
    one conditional write (still building on that worker), so two live workers checking at
    once recover it once.
    """

    def __init__(self, store: BuildStore, send: SendRecovered, grace: float = 9.0) -> None:
        self.store = store
        self.send = send
        self.grace = grace
        self._suspects: dict[str, float] = {}

    def lost(self) -> list[BuildRecord]:
        live = self.store.workers()
        building, _ = self.store.find([[status_index("building")]], limit=1000)

        def gone(record: BuildRecord) -> bool:
            info = live.get(record.worker or "")
            if info is None:
                return record.worker is not None
            return float(info.get("started_at") or 0) > (record.started_at or 0) + 1

        return [r for r in building if gone(r)]

    def check(self) -> list[str]:
        """Recover what has been lost for ``grace`` seconds; the ids put back in a queue."""
        now = time.monotonic()
        previous = self._suspects
        suspects = {r.id: (r, previous.get(r.id, now)) for r in self.lost()}
        self._suspects = {build_id: since for build_id, (_, since) in suspects.items()}
        recovered = []
        for build_id, (record, since) in suspects.items():
            if build_id not in previous or now - since < self.grace:
                continue
            if self.recover(record):
                recovered.append(build_id)
                self._suspects.pop(build_id, None)
        return recovered

    def recover(self, record: BuildRecord) -> bool:
        lost_worker = record.worker
        if record.required_capabilities:
            # Routed to the lost worker for what it had: the next worker that has it takes it.
            return wait_again(self.store, record, lambda r: r.status == "building" and r.worker == lost_worker)
        claimed = self.store.update_if(
            record.id,
            lambda r: r.status == "building" and r.worker == lost_worker and r.recoveries == record.recoveries,
            status="queued",
            step=f"requeued: worker {lost_worker} was lost",
            worker=None,
            recoveries=record.recoveries + 1,
        )
        if claimed is None:
            return False
        try:
            self.send(record.id, record.queue, claimed.recoveries)
        except Exception:
            # Not sent: as it was, so that the next check tries again.
            self.store.update(
                record.id, status="building", step=record.step, worker=lost_worker, recoveries=record.recoveries
            )
            raise
        count_retry("worker-lost")
        logger.warning(
            "build %s: worker %s was lost; queued again (recovery %d)", record.id, lost_worker, claimed.recoveries
        )
        return True


class Heartbeat:
    """Keeps the worker's registration (its queues and capabilities) alive in Redis while it runs;
    after each beat, ``on_beat`` (the recovery of lost builds) runs."""

    def __init__(
        self,
        store: BuildStore,
        name: str,
        info: dict[str, Any],
        interval: float = 10.0,
        on_beat: Callable[[], object] | None = None,
    ) -> None:
        self.store = store
        self.name = name
        self.info = info
        self.interval = interval
        self.on_beat = on_beat
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
            if self.on_beat is not None and not self._failing:
                try:
                    self.on_beat()
                except Exception:  # noqa: BLE001 - Redis may be away; the next beat tries again
                    logger.exception("recovery of lost builds failed")

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


def worker_info(
    capabilities: Capabilities, targets: Sequence[BuildTarget], name: str = "", metrics_url: str | None = None
) -> dict[str, Any]:
    """What a worker registers: the API reads queues from it to tell who serves a target, routing
    (builder.routing) its ``capabilities`` and its own queue (Celery's direct queue), and where its
    /metrics is (``GET /api/metrics/targets`` lists them for Prometheus)."""
    return {
        "queues": worker_queues(targets) + ([direct_queue(name)] if name else []),
        "targets": [t.identifier for t in targets],
        "fingerprint": capabilities.fingerprint(),
        "capabilities": capabilities.advertised(),
        "probe": capabilities.to_dict(),
        "started_at": time.time(),
        "metrics": metrics_url,
    }
