"""Capability routing: a build that failed for what its worker lacks runs on a worker that has it.

A failed build's diagnosis names the capability that would have made it pass
(builder/advertised.py). When the worker that failed lacks it and the capability is one a
worker can have (a tool workers look for, a library):

* a live worker of the same target that advertises it (and every capability the build was
  routed for before) gets the build in its own queue: Celery's direct queue of that worker
  (``worker_direct``, ``<node>.dq2``), with a new recovery number, so that an older job of the
  build is stale;
* when no live worker has it, the build waits as ``waiting-for-capability`` with
  ``missing_capability``; the heartbeat of every worker (``WaitingBuilds``) claims the waiting
  builds it can run, at its registration and then at every beat, and sends them to itself.

A build routed to a worker that is lost before it ran it (the job sits in the lost worker's
own queue) or while it ran it waits again for the capability, and the next capable worker
takes it. The capabilities a build needs only grow, so a build never goes back and forth
between two workers that each lack one of them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from celery.utils.nodenames import default_nodename, worker_direct

from builder.advertised import routable, satisfies, satisfies_all
from builder.records import PREFIX, BuildRecord, BuildStore, queued_index, status_index

logger = logging.getLogger(__name__)

WAITING = "waiting-for-capability"
# A build is routed for this many capabilities at most: then its failure stands.
MAX_REQUIRED = 4
# The direct queues builds were routed to: checked for builds whose worker is gone.
ROUTED_QUEUES = f"{PREFIX}routed-queues"

# (build id, queue, recovery number): sends the build's job (builder.tasks.build_sender).
Send = Callable[[str, str, int], None]


def direct_queue(worker_name: str) -> str:
    """The queue only this worker consumes: Celery's ``worker_direct`` queue of its node name."""
    return str(worker_direct(default_nodename(worker_name)).name)


@dataclass
class Route:
    """What a failed outcome becomes: the record's changes, and the queue to send it to (if any)."""

    changes: dict[str, Any]
    queue: str | None = None
    notes: list[str] = field(default_factory=list)
    worker: str | None = None  # the worker it is sent to


def route_failure(
    store: BuildStore,
    record: BuildRecord,
    changes: dict[str, Any],
    *,
    worker_name: str,
    have: Sequence[str],
    probed_tools: Iterable[str],
) -> Route:
    """The outcome ``changes`` of a failed build, turned into a routing where its diagnosis names
    a capability this worker lacks and another worker can have."""
    primary = (changes.get("diagnosis") or {}).get("primary") or {}
    needed = str(primary.get("capability") or "")
    if changes.get("status") != "failed" or not needed or not routable(needed, probed_tools):
        return Route(changes)
    if satisfies(have, needed):
        return Route(changes)  # this worker has it: the failure is the build's own
    required = sorted({*record.required_capabilities, needed})
    if len(required) > MAX_REQUIRED:
        return Route(changes)
    routed = {**changes, "missing_capability": needed, "required_capabilities": required, "finished_at": None}
    worker = capable_worker(store.workers(), record.target, required, exclude=worker_name)
    if worker is None:
        routed.update(status=WAITING, step=f"waiting for a worker with {needed}", queue=target_queue(record))
        note = f"wheelyard: no live worker has {needed}: the build waits for one ({WAITING})"
        return Route(routed, notes=[note])
    queue = direct_queue(worker)
    routed.update(
        status="queued", step=f"routed to {worker}, which has {needed}", queue=queue, recoveries=record.recoveries + 1
    )
    note = f"wheelyard: this worker lacks {needed}; the build goes to {worker}"
    return Route(routed, queue=queue, notes=[note], worker=worker)


def target_queue(record: BuildRecord) -> str:
    """The build's queue of its target (a routed build's queue is a worker's own)."""
    from builder.targets import BuildTarget

    return BuildTarget.parse(record.target).queue


def capable_worker(
    workers: dict[str, dict[str, Any]], target: str, required: Sequence[str], *, exclude: str | None = None
) -> str | None:
    """The first live worker (by name) that builds ``target`` and has every capability ``required``."""
    for name in sorted(workers):
        info = workers[name]
        if name == exclude or target not in info.get("targets", []):
            continue
        if satisfies_all(info.get("capabilities") or [], required):
            return name
    return None


def send_routed(store: BuildStore, record: BuildRecord, queue: str, send: Send) -> None:
    """Send a build routed to ``queue`` (its record already says so); when it cannot be sent, it waits."""
    store.redis.sadd(ROUTED_QUEUES, queue)
    try:
        send(record.id, queue, record.recoveries)
    except Exception:
        logger.exception("build %s: could not be sent to %s; it waits for a capable worker", record.id, queue)
        store.update_if(
            record.id,
            lambda r: r.status == "queued" and r.queue == queue,
            status=WAITING,
            step=f"waiting for a worker with {record.missing_capability}",
            queue=target_queue(record),
        )


class WaitingBuilds:
    """Run by a worker's heartbeat: claims the waiting builds this worker can run and sends them to
    its own queue; puts back to waiting the builds routed to a worker that is gone."""

    def __init__(
        self, store: BuildStore, worker_name: str, targets: Sequence[str], have: Sequence[str], send: Send
    ) -> None:
        self.store = store
        self.worker_name = worker_name
        self.targets = set(targets)
        self.have = list(have)
        self.send = send
        self.queue = direct_queue(worker_name)

    def check(self) -> list[str]:
        """The ids of the builds claimed by this worker."""
        self.release_stranded()
        waiting, _ = self.store.find([[status_index(WAITING)]], limit=1000)
        claimed = []
        for record in reversed(waiting):  # oldest first
            if record.target not in self.targets or not satisfies_all(self.have, record.required_capabilities):
                continue
            taken = self.store.update_if(
                record.id,
                _still_waiting(record.recoveries),
                status="queued",
                step=f"routed to {self.worker_name}, which has {record.missing_capability}",
                queue=self.queue,
                recoveries=record.recoveries + 1,
            )
            if taken is not None:
                send_routed(self.store, taken, self.queue, self.send)
                claimed.append(record.id)
                logger.warning("build %s: this worker has %s; it runs here", record.id, record.missing_capability)
        return claimed

    def release_stranded(self) -> list[str]:
        """Builds queued in the own queue of a worker that is gone wait again for their capability."""
        live = {direct_queue(name) for name in self.store.workers()}
        released = []
        for raw in self.store.redis.smembers(ROUTED_QUEUES):
            queue = raw.decode() if isinstance(raw, bytes) else str(raw)
            if queue in live:
                continue
            stranded, _ = self.store.find([[queued_index(queue)]], limit=1000)
            for record in stranded:
                if wait_again(self.store, record, _queued_in(queue)):
                    released.append(record.id)
            if not stranded:
                self.store.redis.srem(ROUTED_QUEUES, queue)
        return released


def _still_waiting(recoveries: int) -> Callable[[BuildRecord], bool]:
    return lambda r: r.status == WAITING and r.recoveries == recoveries


def _queued_in(queue: str) -> Callable[[BuildRecord], bool]:
    return lambda r: r.status == "queued" and r.queue == queue


def wait_again(store: BuildStore, record: BuildRecord, condition: Callable[[BuildRecord], bool]) -> bool:
    """Put a routed build back to waiting for its capability (its worker is gone), if ``condition`` still holds."""
    done = store.update_if(
        record.id,
        lambda r: condition(r) and r.recoveries == record.recoveries,
        status=WAITING,
        step=f"waiting for a worker with {record.missing_capability}: {record.worker or 'its worker'} was lost",
        queue=target_queue(record),
        worker=None,
        recoveries=record.recoveries + 1,
    )
    if done is not None:
        logger.warning("build %s: its worker is gone; it waits for %s again", record.id, record.missing_capability)
    return done is not None
