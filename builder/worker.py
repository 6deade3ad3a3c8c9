"""The worker's side of a build, without Celery: take a record, run the director, store the outcome.

``run_build`` is what the Celery task calls; it is a plain function so that tests and
other runners can call it too.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from builder.capabilities import Capabilities
from builder.config import Settings
from builder.pipeline import BuildDirector, BuildJob, BuildLog, BuildOutcome, work_directory
from builder.records import DONE, BuildStore
from builder.targets import BuildTarget
from builder.tasks import MIRROR_QUEUE

logger = logging.getLogger(__name__)


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
    record = store.get(build_id)
    if record is None or record.status in DONE:
        return None
    store.clear_log(build_id)
    store.update(
        build_id,
        status="building",
        step="start",
        started_at=time.time(),
        worker=worker_name,
        attempts=record.attempts + 1,
        finished_at=None,
        error=None,
        diagnosis=None,
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    workroot = settings.data_dir / "work"
    workroot.mkdir(exist_ok=True)
    workdir = work_directory(workroot)
    log = BuildLog(workdir / "build.log", sink=lambda data: store.append_log(build_id, data))
    job = BuildJob(
        build_id=build_id,
        name=record.name,
        version=record.version,
        target=BuildTarget.parse(record.target),
        from_source=record.from_source,
    )

    def report(step: str, info: dict[str, Any]) -> None:
        store.update(build_id, step=step)

    try:
        director = BuildDirector(
            settings,
            capabilities,
            job,
            workdir=workdir,
            log=log,
            report=report,
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
            changes.update(
                diagnosis=diagnosis,
                ruleset=RULESET_VERSION,
                capabilities=store.capabilities_for(record.queue) or capabilities.fingerprint(),
            )
            primary = (diagnosis or {}).get("primary") or {}
            log.line(
                f"wheelyard: diagnosis: {primary.get('category', 'unknown')} ({primary.get('rule', '-')})"
                f" at line {primary.get('line', '-')}: {primary.get('detail') or primary.get('explanation') or ''}"
            )
        store.update(build_id, **changes)
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
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="wheelyard-heartbeat", daemon=True)

    def start(self) -> None:
        self._beat()
        self._thread.start()

    def _beat(self) -> None:
        try:
            self.store.register_worker(self.name, self.info, ttl=int(self.interval * 3))
        except Exception as exc:  # noqa: BLE001 - Redis may be away for a while; keep trying
            logger.warning("worker registration failed: %s", exc)

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
