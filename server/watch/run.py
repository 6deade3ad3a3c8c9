"""One run of a watch list: ensure its closure for its targets, then sort what failed.

A failed build is built again (by Celery's retry of the list's task, with a countdown that
doubles with each try) unless that cannot help: its diagnosis names a capability that no live
worker has (a library, more memory, a tool), or it was tried ``watch_retries`` times already
(counted in Redis, forgotten a day after the last try). What a run found
is kept in Redis (``wheelyard:watch:status``) for ``GET /api/watch`` and the beat log.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import redis

from builder.errors import WatchFileUnreadable, WheelyardError
from builder.records import PREFIX, BuildStore
from server.service import BuildService
from server.watch.lists import WatchList

logger = logging.getLogger(__name__)
# A failure's tries are forgotten this long after the last one: it is tried again after that.
FORGET_TRIES_SECONDS = 24 * 3600

STATUS = f"{PREFIX}watch:status"


class Ensurer(Protocol):
    def ensure(self, sources: Any, selectors: Any) -> Any: ...


class EnsureReport(Protocol):
    @property
    def errors(self) -> list[dict[str, Any]]: ...

    def counts(self) -> dict[str, int]: ...

    def failures(self) -> list[Any]: ...


@dataclass
class ListOutcome:
    """What one run of a list found: counts by outcome, and its failures sorted by what to do about them."""

    name: str
    counts: dict[str, int] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)  # a target's closure could not be resolved
    retry: list[dict[str, Any]] = field(default_factory=list)  # failed builds worth another try
    needs_capability: list[dict[str, Any]] = field(default_factory=list)  # no live worker could build them
    given_up: list[dict[str, Any]] = field(default_factory=list)  # failed on every retry; left for now
    at: float = field(default_factory=time.time)
    attempt: int = 0

    @property
    def should_retry(self) -> bool:
        return bool(self.errors or self.retry)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "at": self.at,
            "attempt": self.attempt,
            "counts": self.counts,
            "errors": self.errors,
            "retry": self.retry,
            "needs_capability": self.needs_capability,
            "given_up": self.given_up,
        }

    def summary(self) -> str:
        shown = ", ".join(f"{n} {k}" for k, n in self.counts.items() if n)
        parts = [f"watch list {self.name!r}: {shown or 'nothing'}"]
        for error in self.errors:
            parts.append(f"{error.get('target')}: {error.get('message')}")
        for item in self.needs_capability:
            why = item.get("explanation") or "see its build log"
            parts.append(f"{_label(item)} needs {item['capability']}, which no worker has: {why}")
        for item in self.retry:
            parts.append(f"{_label(item)} failed: {item.get('explanation') or 'see its build log'}")
        for item in self.given_up:
            parts.append(f"{_label(item)} failed on every retry; not tried again for now")
        return "; ".join(parts)


def sources_of(watch: WatchList) -> Any:
    """The ensure core's sources for a list: its files read now (an edit is seen at the next run)."""
    from server.ensure.inputs import Sources, from_pylock, from_requirements_file, from_strings, from_uv_lock

    sources = from_strings(watch.projects) if watch.projects else Sources()
    for file in watch.requirements:
        sources = sources.merged(from_requirements_file(Path(file)))
    for file in watch.lock:
        text = Path(file).read_text()
        lock = from_uv_lock(text, (), None) if Path(file).name.endswith("uv.lock") else from_pylock(text, (), ())
        sources = sources.merged(lock)
    return sources


def live_capabilities(store: BuildStore) -> set[str]:
    """Every capability some live worker has (the names diagnosis rules use)."""
    found: set[str] = set()
    for info in store.workers().values():
        found |= {c for c in str(info.get("fingerprint", "")).split(",") if c}
    return found


def sort_failures(
    name: str, report: EnsureReport, capabilities: set[str], tries: dict[str, int], max_tries: int, attempt: int
) -> ListOutcome:
    """Each failure: needing a capability no worker has, tried ``max_tries`` times already, or to retry."""
    outcome = ListOutcome(name=name, counts=report.counts(), errors=list(report.errors), attempt=attempt)
    for item in report.failures():
        primary = (item.diagnosis or {}).get("primary") or {}
        entry = {
            "name": item.name,
            "version": item.version,
            "target": item.target,
            "build_id": item.build_id,
            "category": primary.get("category"),
            "explanation": primary.get("explanation") or (item.error or {}).get("message"),
            "capability": primary.get("capability") or None,
        }
        if entry["capability"] and entry["capability"] not in capabilities:
            outcome.needs_capability.append(entry)
        elif tries.get(failure_key(entry), 0) >= max_tries:
            outcome.given_up.append(entry)
        else:
            outcome.retry.append(entry)
    return outcome


def failure_key(entry: Any) -> str:
    """name==version@target of a report item or a failure entry."""
    if isinstance(entry, dict):
        return f"{entry['name']}=={entry['version']}@{entry['target']}"
    return f"{entry.name}=={entry.version}@{entry.target}"


class WatchState:
    """The last outcome of each list, and the failures given up on (each for a while), in Redis."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def save(self, outcome: ListOutcome) -> None:
        self.client.hset(STATUS, outcome.name, json.dumps(outcome.to_dict()))

    def all(self) -> dict[str, dict[str, Any]]:
        return {_text(k): json.loads(v) for k, v in self.client.hgetall(STATUS).items()}

    def tries(self, keys: list[str]) -> dict[str, int]:
        """How many times each failure (``failure_key``) was built again lately."""
        if not keys:
            return {}
        found = self.client.mget([_tries_key(k) for k in keys])
        return {k: int(v or 0) for k, v in zip(keys, found, strict=True)}

    def tried(self, key: str, forget_after: int) -> int:
        """Count one more try of a failure; the count is forgotten ``forget_after`` s after the last."""
        with self.client.pipeline(transaction=True) as pipe:
            pipe.incr(_tries_key(key))
            pipe.expire(_tries_key(key), max(1, forget_after))
            count, _ = pipe.execute()
        return int(count)

    def retry_scheduled(self, name: str, countdown: int) -> bool:
        """Claim the one pending retry of a list; False when another run has it already."""
        return bool(self.client.set(f"{PREFIX}watch:retrying:{name}", "1", nx=True, ex=countdown + 600))

    def retry_taken(self, name: str) -> None:
        self.client.delete(f"{PREFIX}watch:retrying:{name}")


def _tries_key(key: str) -> str:
    return f"{PREFIX}watch:tries:{key}"


@dataclass
class ListRunner:
    """Runs one watch list: builds again what its last run said to retry, ensures it, sorts what failed."""

    ensurer: Ensurer
    service: BuildService
    state: WatchState
    retries: int  # a failure is built again this many times at most
    backoff: int  # seconds before the first retry; doubled for each next one

    def run(self, watch_list: WatchList, attempt: int, resubmit: list[dict[str, Any]]) -> ListOutcome:
        if attempt:
            self.state.retry_taken(watch_list.name)
        for entry in resubmit:
            self.state.tried(failure_key(entry), FORGET_TRIES_SECONDS)
            self._build_again(entry)
        try:
            report = self.ensurer.ensure(sources_of(watch_list), watch_list.targets)
        except (WheelyardError, OSError) as exc:
            outcome = ListOutcome(watch_list.name, errors=[_error(exc)], attempt=attempt)
        else:
            tries = self.state.tries([failure_key(item) for item in report.failures()])
            capabilities = live_capabilities(self.service.store)
            outcome = sort_failures(watch_list.name, report, capabilities, tries, self.retries, attempt)
        self.state.save(outcome)
        logger.info("%s", outcome.summary())
        return outcome

    def countdown(self, outcome: ListOutcome, attempt: int) -> int | None:
        """Seconds until the list's retry, or None: nothing to retry, retries spent, or one is pending."""
        if not outcome.should_retry:
            return None
        if attempt >= self.retries:
            logger.warning("watch list %r: still failing after %d retries", outcome.name, attempt)
            return None
        tries = self.state.tries([failure_key(entry) for entry in outcome.retry])
        seconds: int = self.backoff * 2 ** max(tries.values(), default=attempt)
        if not self.state.retry_scheduled(outcome.name, seconds):
            return None  # a run of an earlier tick has a retry under way: one is enough
        logger.info("watch list %r: trying again in %d s", outcome.name, seconds)
        return seconds

    def _build_again(self, entry: dict[str, Any]) -> None:
        try:
            self.service.submit(f"{entry['name']}=={entry['version']}", [entry["target"]], retry=True)
        except WheelyardError as exc:
            logger.warning("watch: cannot build %s again: %s", failure_key(entry), exc.message)


def _error(exc: Exception) -> dict[str, Any]:
    if isinstance(exc, WheelyardError):
        return {"target": None, "error": exc.reference, "message": exc.message, "hint": exc.hint}
    return {"target": None, **WatchFileUnreadable(str(exc)).to_dict()}


def _label(item: dict[str, Any]) -> str:
    return f"{item['name']} {item['version']} ({item['target']})"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
