"""A build's final outcome settled: a failure routed to a worker with the capability its worker
lacked (builder.routing), else named with the nearest releases that work (builder.nearest)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from builder.build_job import BuildOutcome
from builder.capabilities import TOOLS, Capabilities
from builder.config import Settings
from builder.errors import UpstreamUnavailable
from builder.nearest import NearestReleases, describe
from builder.records import BuildRecord, BuildStore
from builder.redis_retry import REDIS_DOWN, retry_redis
from builder.routing import Route, route_failure, send_routed
from builder.upstream import SimpleIndex

logger = logging.getLogger(__name__)


def settle(
    settings: Settings,
    store: BuildStore,
    record: BuildRecord,
    capabilities: Capabilities,
    outcome: BuildOutcome,
    changes: dict[str, Any],
    worker_name: str,
) -> Route:
    """The record's changes for a final outcome: a failure routed to a worker with the capability
    this one lacked (builder.routing), else with the nearest releases that work; said in its log."""
    route = route_failure(
        store,
        record,
        {**changes, "missing_capability": None},
        worker_name=worker_name,
        have=capabilities.advertised(),
        probed_tools=TOOLS,
    )
    lines = list(route.notes)
    # Not for an upstream that did not answer: the task tries the build again.
    if route.changes["status"] == "failed" and not isinstance(outcome.error, UpstreamUnavailable):
        route.changes["nearest_release"], said = nearest_release(settings, store, record)
        lines += [said] if said else []
    if lines:
        with contextlib.suppress(*REDIS_DOWN):
            store.append_log(record.id, "".join(f"{line}\n" for line in lines).encode())
    return route


def nearest_release(settings: Settings, store: BuildStore, record: BuildRecord) -> tuple[dict[str, Any] | None, str]:
    """The nearest releases that work for the failed build's target (builder.nearest), and the line saying so."""
    finder = NearestReleases(
        store,
        SimpleIndex(settings.upstream_index, timeout=30),
        ttl=settings.nearest_release_ttl,
        glibc_max=settings.manylinux_glibc_max,
    )
    try:
        found = finder.for_build(record.name, record.version, record.target)
    except Exception as exc:  # noqa: BLE001 - a failed build is recorded whatever the lookup does
        logger.warning("build %s: the nearest working release is unknown: %s", record.id, exc)
        return None, ""
    return found, "wheelyard: " + describe(found, record.target)


def record_settled(
    store: BuildStore,
    build_id: str,
    mine: Callable[[BuildRecord], bool],
    route: Route,
    send: Callable[[str, str, int], None],
) -> BuildRecord | None:
    """Write the settled outcome if the build is still this attempt's, then send a routed build to
    the worker that has what it lacked; None when another worker took the build over."""
    written = retry_redis(
        lambda: store.update_if(build_id, mine, **route.changes), f"build {build_id}: recording the outcome"
    )
    if written is not None and route.queue is not None:
        logger.warning("build %s: this worker lacks %s; sent to %s", build_id, written.missing_capability, route.worker)
        send_routed(store, written, route.queue, send)
    elif written is None:
        # Another worker took the build over (this one was thought lost): its outcome stands.
        logger.warning("build %s: taken over by another worker; this attempt's outcome is not recorded", build_id)
    return written


def cannot_send(build_id: str, queue: str, recovery: int) -> None:
    raise RuntimeError("this runner sends no jobs")
