"""Accepting build requests: validate everything, then create or share one build per target.

All checks run before anything is queued: a bad build identifier, a malformed
requirement or a release upstream does not have refuses the whole request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from packaging.utils import canonicalize_name

from builder.errors import NoDistribution, PrivateName, WorkerLost
from builder.metrics import count_retry
from builder.record_listing import Position
from builder.records import (
    ACTIVE,
    ALL_BUILDS,
    STATUSES,
    BuildRecord,
    BuildStore,
    name_index,
    queued_index,
    status_index,
    target_index,
    target_key,
)
from builder.targets import MIRROR_QUEUE, BuildTarget, parse_targets
from builder.upstream import SimpleIndex, parse_requirement

Send = Callable[[str, str], None]  # (build id, queue)


@dataclass
class Submission:
    record: BuildRecord
    created: bool


class BuildService:
    def __init__(
        self,
        store: BuildStore,
        index: SimpleIndex,
        send: Send,
        *,
        from_source_default: bool = False,
        glibc_max: tuple[int, int] = (2, 28),
        is_private: Callable[[str], bool] | None = None,
    ) -> None:
        self.store = store
        self.index = index
        self.send = send
        self.from_source_default = from_source_default
        self.glibc_max = glibc_max
        # Names people uploaded to the index: never mirrored or built from upstream (server.ensure.holdings).
        self.is_private = is_private

    def submit(
        self,
        requirement: str,
        targets: Sequence[str],
        *,
        from_source: bool | None = None,
        retry: bool = False,
    ) -> list[Submission]:
        req = parse_requirement(requirement)
        parsed = parse_targets(targets)
        if self.is_private is not None and self.is_private(req.name):
            raise PrivateName(canonicalize_name(req.name))
        release = self.index.resolve(req)
        source = self.from_source_default if from_source is None else from_source
        plans: list[tuple[BuildTarget, str]] = []
        for target in parsed:
            wheel = None if source else release.wheel_for(target, glibc_max=self.glibc_max)
            if wheel is None and release.sdist is None:
                raise NoDistribution(release.name, str(release.version), target)
            plans.append((target, MIRROR_QUEUE if wheel is not None else target.queue))
        version = str(release.version)
        return [self._one(release.name, version, t, queue, str(req), source, retry) for t, queue in plans]

    def _one(
        self,
        name: str,
        version: str,
        target: BuildTarget,
        queue: str,
        requirement: str,
        from_source: bool,
        retry: bool,
    ) -> Submission:
        key = target_key(name, version, target.identifier)
        with self.store.lock(key):
            existing = self.store.for_key(key)
            if existing is not None and not self._needs_new_build(existing, from_source, retry):
                return Submission(existing, created=False)
            record = self.store.create(
                name=name,
                version=version,
                target=target.identifier,
                requirement=requirement,
                from_source=from_source,
                queue=queue,
            )
            if existing is not None and retry and existing.status in ("failed", "waiting-for-capability"):
                count_retry("requested")  # a build that had ended, or was waiting, asked to run again
            # Sent under the lock: a concurrent request sees the build only once it is queued.
            try:
                self.send(record.id, queue)
            except Exception:
                # Not queued means not accepted: take the record back so that the next request
                # creates the build again instead of finding one that no worker will ever run.
                self.store.discard(record)
                raise
        return Submission(record, created=True)

    def _needs_new_build(self, existing: BuildRecord, from_source: bool, retry: bool) -> bool:
        if retry and existing.status == "building" and self._worker_lost(existing):
            return self._end_lost(existing)
        if retry and existing.status == "waiting-for-capability":
            return True  # asked to try again now; it waits again if it fails the same way
        if existing.status in ACTIVE or existing.status == "published":
            return False
        if existing.status == "mirrored":
            # A team that runs only wheels built in-house asks for a build from source.
            return from_source
        # failed: not again and again; only when asked, or when something that matters changed.
        if retry:
            return True
        from builder.diagnosis import RULESET_VERSION

        if existing.ruleset != RULESET_VERSION:
            return True
        current = self.store.capabilities_for(existing.queue)
        return bool(current) and current != existing.capabilities

    def _worker_lost(self, record: BuildRecord) -> bool:
        """Whether a building record's worker is gone: not registered, or registered again
        after the build started (a restart)."""
        info = self.store.workers().get(record.worker or "")
        if info is None:
            return True
        return float(info.get("started_at") or 0) > (record.started_at or 0) + 1

    def _end_lost(self, record: BuildRecord) -> bool:
        """Record a lost attempt as failed (its job, redelivered later, then finds it done) so
        that a retry creates a new attempt; whether it was still the lost attempt."""
        ended = self.store.update_if(
            record.id,
            lambda r: r.status == "building" and r.worker == record.worker and r.started_at == record.started_at,
            status="failed",
            step=None,
            finished_at=time.time(),
            error=WorkerLost(record.worker).to_dict(),
        )
        return ended is not None


def shown_status(record: BuildRecord, served: dict[str, list[str]]) -> str:
    """A record's status as the API shows it: a queued build no live worker serves is waiting for one."""
    if record.status == "queued" and record.queue not in served:
        return "waiting-for-worker"
    return record.status


def find_builds(
    store: BuildStore,
    served: dict[str, list[str]],
    *,
    name: str | None = None,
    status: str | None = None,
    target: str | None = None,
    limit: int = 100,
    after: Position | None = None,
) -> tuple[list[BuildRecord], Position | None]:
    """Builds newest first whose (shown) status, PEP 503 name and target are those given, from
    the store's indexes; and where the next page starts (None: there is no more).

    "queued" and "waiting-for-worker" are both stored as queued: the first is a queued build of
    a queue some live worker serves, the second one of a queue none does.
    """
    clauses: list[list[str]] = []
    exclude: list[str] = []
    if status == "queued":
        clauses.append([queued_index(queue) for queue in sorted(served)])
    elif status == "waiting-for-worker":
        clauses.append([status_index("queued")])
        exclude = [queued_index(queue) for queue in sorted(served)]
    elif status is not None:
        clauses.append([status_index(status)])
    if name is not None:
        clauses.append([name_index(name)])
    if target is not None:
        clauses.append([target_index(target)])
    records, following = store.find(clauses, exclude=exclude, limit=limit, after=after)
    # What the indexes said, checked on the records read: one that changed in between is left out.
    wanted = canonicalize_name(name) if name is not None else None
    return [
        r
        for r in records
        if (status is None or shown_status(r, served) == status)
        and (wanted is None or canonicalize_name(r.name) == wanted)
        and (target is None or r.target == target)
    ], following


@dataclass(frozen=True)
class BuildCounts:
    total: int
    by_status: dict[str, int]  # every status of STATUSES, as the API shows them


def count_builds(store: BuildStore, served: dict[str, list[str]]) -> BuildCounts:
    """How many builds there are, and how many have each status as ``shown_status`` shows it,
    from the sizes of the indexes alone (one ZCARD per status and per served queue, in one
    transaction; no record is read): the queued builds of the queues live workers serve are
    "queued", every other queued build is "waiting-for-worker"."""
    stored = [status for status in STATUSES if status != "waiting-for-worker"]
    queues = sorted(served)
    sizes = store.sizes([ALL_BUILDS, *(status_index(s) for s in stored), *(queued_index(q) for q in queues)])
    by_status = dict(zip(stored, sizes[1 : 1 + len(stored)], strict=True))
    queued = by_status["queued"]
    served_queued = min(sum(sizes[1 + len(stored) :]), queued)
    by_status["queued"] = served_queued
    by_status["waiting-for-worker"] = queued - served_queued
    return BuildCounts(total=sizes[0], by_status={status: by_status[status] for status in STATUSES})


def present(record: BuildRecord, served: dict[str, list[str]], base_url: str = "") -> dict[str, Any]:
    """A record as the API shows it: a queued build no live worker serves is waiting for one."""
    status = shown_status(record, served)
    return {
        "id": record.id,
        "name": record.name,
        "version": record.version,
        "target": record.target,
        "requirement": record.requirement,
        "from_source": record.from_source,
        "status": status,
        "step": record.step,
        "queue": record.queue,
        "created_at": record.created_at,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        "duration": record.duration,
        "worker": record.worker,
        "runs": record.runs,
        "attempts": [
            {**a, "log_url": f"{base_url}/api/builds/{record.id}/log?attempt={a.get('number')}"}
            for a in record.attempts
        ],
        "remedy": record.remedy,
        "wheel": record.wheel,
        "sha256": record.sha256,
        "source": record.source,
        "error": record.error,
        "diagnosis": record.diagnosis,
        "timings": record.timings,
        "missing_capability": record.missing_capability,
        "required_capabilities": record.required_capabilities,
        "nearest_release": record.nearest_release,
        "log_url": f"{base_url}/api/builds/{record.id}/log",
    }
