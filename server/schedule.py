"""Scheduled watch lists: keep the index ahead of demand.

``wheelyard beat`` runs Celery beat together with a single-process worker of its own queue.
Every ``watch_interval`` seconds beat sends ``wheelyard.watch``, which reads the watch file
(``server.watch.lists``) and sends one
``wheelyard.watch-list`` task per list. That task ensures the list's closure for its targets
through the ensure core, as ``wheelyard ensure`` would: a new upstream release of a watched
project, or a target added to a list, is asked for at the next run. Failed builds are built
again through Celery's retry with a doubling countdown (``server.watch.run`` says which).
The old prebuild file (``server.watch.prebuild``) is still submitted, line by line, on its own interval.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

from builder.config import Settings
from builder.errors import ConfigurationError, WheelyardError
from builder.records import BuildStore, connect
from builder.tasks import BUILD_TASK, create_celery_app
from builder.upstream import SimpleIndex
from server.service import BuildService
from server.watch.lists import WatchList, read_watch_file
from server.watch.prebuild import CONVERT_HINT, read_prebuild_file, submit_prebuilds
from server.watch.run import ListRunner, WatchState

logger = logging.getLogger(__name__)

SCHEDULE_QUEUE = "wheelyard.schedule"
WATCH_TASK = "wheelyard.watch"
WATCH_LIST_TASK = "wheelyard.watch-list"
PREBUILD_TASK = "wheelyard.prebuild"


def load_watch_lists(settings: Settings) -> list[WatchList]:
    """The watch file's lists, checked (none without a watch file)."""
    from server.ensure.targets import expand_targets

    if settings.watch_file is None:
        return []
    return read_watch_file(settings.watch_file, check_targets=expand_targets)


def create_schedule_app(settings: Settings, redis_url: str) -> Celery:
    from server.ensure.api import make_ensurer

    app = create_celery_app(settings, redis_url)
    store = BuildStore(connect(redis_url), log_limit=settings.limits.log_bytes)

    def send(build_id: str, queue: str) -> None:
        app.send_task(BUILD_TASK, args=[build_id], queue=queue)

    service = BuildService(
        store,
        SimpleIndex(settings.upstream_index),
        send,
        from_source_default=settings.from_source_default,
        glibc_max=settings.manylinux_glibc_max,
    )
    runner = ListRunner(
        make_ensurer(settings, service),
        service,
        WatchState(store.redis),
        retries=settings.watch_retries,
        backoff=settings.watch_backoff,
    )

    @app.task(name=WATCH_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
    def watch() -> int:
        try:
            lists = load_watch_lists(settings)
        except WheelyardError as exc:
            # A file edited badly since beat started: said in the log, nothing ensured until it is fixed.
            logger.error("watch: %s [%s]%s", exc.message, exc.reference, f" hint: {exc.hint}" if exc.hint else "")
            return 0
        for watch_list in lists:
            app.send_task(WATCH_LIST_TASK, args=[watch_list.to_dict()], queue=SCHEDULE_QUEUE)
        return len(lists)

    @app.task(  # type: ignore[untyped-decorator]
        name=WATCH_LIST_TASK, bind=True, max_retries=settings.watch_retries, acks_late=True, ignore_result=True
    )
    def watch_list(self: Any, data: dict[str, Any], resubmit: list[dict[str, Any]] | None = None) -> None:
        attempt = self.request.retries
        outcome = runner.run(WatchList.from_dict(data), attempt, resubmit or [])
        countdown = runner.countdown(outcome, attempt)
        if countdown is not None:
            raise self.retry(countdown=countdown, kwargs={"resubmit": outcome.retry})

    @app.task(name=PREBUILD_TASK, acks_late=True, ignore_result=True, throws=(WheelyardError,))  # type: ignore[untyped-decorator]
    def prebuild() -> dict[str, int]:
        if settings.prebuild_file is None:
            return {}
        counts = submit_prebuilds(service, settings.prebuild_file)
        logger.info("prebuild: %s", counts)
        return counts

    app.conf.beat_schedule = beat_schedule(settings)
    return app


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """What beat sends, and how often: the watch lists and the prebuild file, those configured."""
    schedule = {}
    for entry, task, every, wanted in (
        ("watch", WATCH_TASK, settings.watch_interval, settings.watch_file),
        ("prebuild", PREBUILD_TASK, settings.prebuild_interval, settings.prebuild_file),
    ):
        if wanted is not None:
            options = {"queue": SCHEDULE_QUEUE, "expires": float(every)}
            schedule[entry] = {"task": task, "schedule": float(every), "options": options}
    return schedule


def run_beat(settings: Settings, redis_url: str) -> None:
    if settings.watch_file is None and settings.prebuild_file is None:
        raise ConfigurationError(
            "no watch file is configured",
            "set WHEELYARD_WATCH_FILE to a watch list file (docs/watch.md says how to write one)",
        )
    load_watch_lists(settings)  # refuse a bad file before starting
    if settings.prebuild_file is not None:
        read_prebuild_file(settings.prebuild_file)
        logger.warning("%s", CONVERT_HINT)
    app = create_schedule_app(settings, redis_url)
    schedule_db = settings.data_dir / "beat-schedule"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app.worker_main(
        [
            "worker",
            "-B",
            "-Q",
            SCHEDULE_QUEUE,
            "-c",
            "1",
            "-P",
            "solo",
            "-s",
            str(schedule_db),
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            "-n",
            "wheelyard-beat@%h",
        ]
    )
