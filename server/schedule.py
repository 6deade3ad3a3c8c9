"""Scheduled prebuild jobs: keep the index ahead of demand.

``wheelyard beat`` runs Celery beat together with a single-process worker of its own
queue. Every ``prebuild_interval`` seconds beat sends ``wheelyard.prebuild``, which reads
the prebuild file (``REQUIREMENT TARGET[,TARGET...]`` per line, ``#`` comments) and submits
each line like any request: targets already on the index answer at once, the others are
queued for the workers. A bad line is reported and skipped; it never stops the others.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from celery import Celery

from builder.config import Settings
from builder.errors import WheelyardError
from builder.records import BuildStore, connect
from builder.tasks import BUILD_TASK, create_celery_app
from builder.upstream import SimpleIndex
from server.service import BuildService

logger = logging.getLogger(__name__)

SCHEDULE_QUEUE = "wheelyard.schedule"
PREBUILD_TASK = "wheelyard.prebuild"


@dataclass(frozen=True)
class PrebuildLine:
    number: int
    requirement: str
    targets: tuple[str, ...]


def read_prebuild_file(path: Path) -> list[PrebuildLine]:
    lines = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        parts = text.split()
        if len(parts) != 2:
            raise WheelyardError(
                f"{path}:{number}: expected 'REQUIREMENT TARGET[,TARGET...]', got {raw.strip()!r}",
                "for example: markupsafe==3.0.2 cp312-manylinux_x86_64,cp313-manylinux_x86_64",
                reference="invalid-prebuild-file",
            )
        lines.append(PrebuildLine(number, parts[0], tuple(t for t in parts[1].split(",") if t)))
    return lines


def submit_prebuilds(service: BuildService, path: Path) -> dict[str, int]:
    """Submit every line of the prebuild file; count what was created, already there, refused."""
    counts = {"created": 0, "existing": 0, "refused": 0}
    for line in read_prebuild_file(path):
        try:
            for submission in service.submit(line.requirement, line.targets):
                counts["created" if submission.created else "existing"] += 1
        except WheelyardError as exc:
            counts["refused"] += 1
            logger.warning("%s:%d: %s", path, line.number, exc.message)
    return counts


def create_schedule_app(settings: Settings, redis_url: str) -> Celery:
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

    @app.task(name=PREBUILD_TASK, acks_late=True, ignore_result=True, throws=(WheelyardError,))  # type: ignore[untyped-decorator]
    def prebuild() -> dict[str, int]:
        if settings.prebuild_file is None:
            return {}
        counts = submit_prebuilds(service, settings.prebuild_file)
        logger.info("prebuild: %s", counts)
        return counts

    app.conf.beat_schedule = {
        "prebuild": {
            "task": PREBUILD_TASK,
            "schedule": float(settings.prebuild_interval),
            "options": {"queue": SCHEDULE_QUEUE, "expires": float(settings.prebuild_interval)},
        }
    }
    return app


def run_beat(settings: Settings, redis_url: str) -> None:
    if settings.prebuild_file is None:
        raise WheelyardError(
            "no prebuild file is configured",
            "set WHEELYARD_PREBUILD_FILE to a file of 'REQUIREMENT TARGET[,TARGET...]' lines",
            reference="invalid-configuration",
        )
    read_prebuild_file(settings.prebuild_file)  # refuse a bad file before starting
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
