"""The Celery application and its tasks: thin shells around ``builder.worker.run_build``.

Every option is set on purpose:
- ``acks_late`` + ``reject_on_worker_lost``: a pool process that dies mid-build (kill -9,
  OOM killer) has its job requeued at once; a whole worker that is lost (machine gone) leaves
  its job unacknowledged in Redis, and kombu hands it to another worker once the broker's
  visibility timeout has passed (``time_limits``).
- ``worker_prefetch_multiplier=1``: a worker holds only the job it is running.
- time limits (``time_limits``), all derived from the sandbox's wall-time limit so that
  ``visibility timeout > hard time limit > soft time limit > sandbox wall limit``: the sandbox
  kills a build first and records why; Celery's limits only catch a stuck worker; and a build
  still running is never handed out a second time.
- the broker connection is retried for ever, at start and after a Redis outage.
- ``throws``: expected failures are logged as such, without a traceback.
- failed builds are never retried in a loop: only an upstream that did not answer
  (``UpstreamUnavailable``) is retried, by Celery's own ``autoretry_for``: three times, with
  exponential backoff from 15 s and full jitter, each wait well inside the visibility timeout.
- a whole worker that is lost does not wait for the visibility timeout: the next live worker's
  heartbeat sends its build again (``builder.worker.LostBuilds``, through ``build_sender``),
  numbered, and the lost job, once Celery redelivers it, is stale and skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded

from builder.buildlog import stored_limit
from builder.capabilities import Capabilities
from builder.config import Settings
from builder.errors import TaskTimeLimit, UpstreamUnavailable, WheelyardError
from builder.logs import build_context
from builder.metrics import count_retry
from builder.records import BuildStore, connect
from builder.targets import MIRROR_QUEUE

logger = logging.getLogger(__name__)

BUILD_TASK = "wheelyard.build"


def broker_url(redis_url: str) -> str:
    """kombu names a Redis unix socket ``redis+socket://``; redis-py names it ``unix://``."""
    if redis_url.startswith("unix://"):
        return "redis+socket://" + redis_url[len("unix://") :]
    return redis_url


@dataclass(frozen=True)
class TimeLimits:
    """Seconds; ``wall < soft < hard < visibility`` always holds."""

    wall: int  # the sandbox's limit on the build hooks (WHEELYARD_BUILD_TIMEOUT)
    soft: int  # Celery raises SoftTimeLimitExceeded in the task: the build is recorded as failed
    hard: int  # Celery kills the pool process
    visibility: int  # an unacknowledged job goes back to the queue after this long (kombu's redis transport)
    restore_interval: int  # how often a worker looks for such jobs


def time_limits(wall_seconds: int) -> TimeLimits:
    """The task's time limits and the broker's visibility timeout, derived from the sandbox's wall limit.

    The steps around the sandboxed hooks (resolve, fetch, prepare, repair, verify, prove, publish)
    are not under the sandbox's wall limit: they get a margin of half of it, between 15 s and
    240 s (the default 1800 s limit gives soft 2040 s, hard 2100 s, visibility 2340 s). The
    visibility timeout counts from the job's delivery, which is when the task starts (a worker
    holds one job per pool process), so a job is redelivered only once its first run is
    certainly over: finished, or its worker lost.
    """
    wall = max(1, int(wall_seconds))
    margin = min(240, max(15, wall // 2))
    soft = wall + margin
    hard = soft + max(5, margin // 4)
    visibility = hard + max(10, margin)
    # kombu looks for expired jobs every unacked_restore_interval x unacked_restore_throttle seconds
    # (100 s by default); a tenth of the visibility timeout keeps recovery within ~1.1 x of it.
    return TimeLimits(wall, soft, hard, visibility, max(1, min(60, visibility // 10)))


def build_sender(app: Celery) -> Callable[[str, str, int], None]:
    """Sends a lost build's job again, with its recovery number (see ``run_build``)."""

    def send(build_id: str, queue: str, recovery: int) -> None:
        app.send_task(BUILD_TASK, args=[build_id], kwargs={"recovery": recovery}, queue=queue)

    return send


def create_celery_app(settings: Settings, redis_url: str) -> Celery:
    limits = time_limits(settings.limits.wall_seconds)
    app = Celery("wheelyard", broker=broker_url(redis_url), set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        task_default_queue=MIRROR_QUEUE,
        task_create_missing_queues=True,
        worker_prefetch_multiplier=1,
        # Each worker also consumes its own queue (<node>.dq2): builds routed to it for a capability.
        worker_direct=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        broker_transport_options={
            "visibility_timeout": limits.visibility,
            "unacked_restore_interval": limits.restore_interval,
            "unacked_restore_throttle": 1,
            "socket_timeout": 30,
            "socket_connect_timeout": 5,
            "retry_on_timeout": True,
        },
        task_serializer="json",
        accept_content=["json"],
    )
    return app


def register_tasks(
    app: Celery,
    settings: Settings,
    redis_url: str,
    capabilities: Capabilities,
    worker_name: str,
    upload_password: str | None,
) -> None:
    """Register the worker's tasks; the API only sends them by name and needs none of this."""
    from builder.worker import run_build

    limits = time_limits(settings.limits.wall_seconds)

    @app.task(  # type: ignore[untyped-decorator]
        name=BUILD_TASK,
        bind=True,
        shared=False,  # this app's task: another app made in the same process registers its own
        acks_late=True,
        reject_on_worker_lost=True,
        time_limit=limits.hard,
        soft_time_limit=limits.soft,
        ignore_result=True,
        throws=(WheelyardError,),
        autoretry_for=(UpstreamUnavailable,),
        max_retries=3,
        retry_backoff=15,
        # A job waiting for its countdown is held unacknowledged: keep the wait well inside the
        # visibility timeout, or kombu would hand the same job out a second time meanwhile.
        retry_backoff_max=limits.visibility // 2,
        retry_jitter=True,
    )
    def build(self: Any, build_id: str, recovery: int = 0) -> str | None:
        with build_context(build_id):
            return run_task(self, build_id, recovery)

    def run_task(self: Any, build_id: str, recovery: int) -> str | None:
        store = BuildStore(connect(redis_url), log_limit=stored_limit(settings.log_head_bytes, settings.log_tail_bytes))
        try:
            outcome = run_build(
                settings,
                store,
                capabilities,
                build_id,
                worker_name=worker_name,
                upload_password=upload_password,
                recovery=recovery,
                send_retry=build_sender(app),
            )
        except SoftTimeLimitExceeded:
            _past_time_limit(store, build_id, limits.soft)
            return "failed"
        if outcome is None:
            return None
        if isinstance(outcome.error, UpstreamUnavailable) and self.request.retries < self.max_retries:
            store.update(build_id, status="queued", step="waiting to retry: upstream did not answer")
            count_retry("upstream-unavailable")
            raise outcome.error  # autoretry_for sends the job again, after its backoff
        return outcome.status


def _past_time_limit(store: BuildStore, build_id: str, seconds: int) -> None:
    """Record a build that ran past the task's soft time limit as failed. Without this the record
    would stay "building" for ever: the job is acknowledged (it failed), so nothing would run it again."""
    from builder.metrics import observe_build
    from builder.worker import record_outcome

    logger.warning("build %s ran past the task's time limit (%s s)", build_id, seconds)
    changes: dict[str, Any] = {
        "status": "failed",
        "step": None,
        "finished_at": time.time(),
        "error": TaskTimeLimit(seconds).to_dict(),
    }
    observe_build(record_outcome(store, build_id, **changes), changes)
