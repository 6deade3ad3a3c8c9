"""The Celery application and its tasks: thin shells around ``builder.worker.run_build``.

Every option is set on purpose:
- ``acks_late`` + ``reject_on_worker_lost``: a worker that dies mid-build leaves the job in
  the queue for another worker; the broker's visibility timeout is longer than the longest
  build allowed, so a slow build is never handed out twice.
- ``worker_prefetch_multiplier=1``: a worker holds only the job it is running.
- time limits just above the sandbox's own wall-time limit: the sandbox kills a build
  first and records why; Celery's limit only catches a stuck worker.
- ``throws``: expected failures are logged as such, without a traceback.
- failed builds are never retried in a loop: only an upstream that did not answer is
  retried, three times with backoff.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

from builder.capabilities import Capabilities
from builder.config import Settings
from builder.errors import WheelyardError
from builder.records import BuildStore, connect

logger = logging.getLogger(__name__)

MIRROR_QUEUE = "wheelyard.mirror"
BUILD_TASK = "wheelyard.build"


def broker_url(redis_url: str) -> str:
    """kombu names a Redis unix socket ``redis+socket://``; redis-py names it ``unix://``."""
    if redis_url.startswith("unix://"):
        return "redis+socket://" + redis_url[len("unix://") :]
    return redis_url


def create_celery_app(settings: Settings, redis_url: str) -> Celery:
    app = Celery("wheelyard", broker=broker_url(redis_url), set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        task_default_queue=MIRROR_QUEUE,
        task_create_missing_queues=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        broker_transport_options={
            "visibility_timeout": settings.limits.wall_seconds + 600,
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

    @app.task(  # type: ignore[untyped-decorator]
        name=BUILD_TASK,
        bind=True,
        acks_late=True,
        reject_on_worker_lost=True,
        time_limit=settings.limits.wall_seconds + 300,
        soft_time_limit=settings.limits.wall_seconds + 240,
        ignore_result=True,
        throws=(WheelyardError,),
        max_retries=3,
    )
    def build(self: Any, build_id: str) -> str | None:
        store = BuildStore(connect(redis_url), log_limit=settings.limits.log_bytes)
        outcome = run_build(
            settings,
            store,
            capabilities,
            build_id,
            worker_name=worker_name,
            upload_password=upload_password,
        )
        if outcome is None:
            return None
        if outcome.status == "failed" and (outcome.error or {}).get("error") == "upstream-unavailable":
            store.update(build_id, status="queued", step="waiting to retry: upstream did not answer")
            raise self.retry(countdown=15 * (2**self.request.retries))
        return outcome.status
