"""Build records: every build is a record with its status, timings, outcome and log.

Records live in Redis so that the API and workers on other machines share them without
a shared disk. One build exists per (name, version, target): creating one takes a
redis-py lock on that key, so concurrent requests for the same target share one build id.

Listing builds answers from secondary indexes, sorted sets of build ids scored by
``created_at`` (so newest first is a reverse range), kept in the same MULTI/EXEC as every
record write (``builder.record_listing`` reads them):

* ``wheelyard:builds``: every build;
* ``wheelyard:idx:status:<status>``: by the status stored in the record;
* ``wheelyard:idx:name:<canonical name>``: by PEP 503 name;
* ``wheelyard:idx:target:<build identifier>``;
* ``wheelyard:idx:queued:<queue>``: the queued builds of a queue (the API shows a queued build
  no live worker serves as "waiting-for-worker", which depends on the queue);
* ``wheelyard:idx:remedied``: the builds whose wheel a remedy made (the record's ``remedy``).

Live workers are keys with a time to live (``wheelyard:worker:<name>``, renewed by their
heartbeat) whose names are kept in the set ``wheelyard:workers``: listing them costs the
number of workers, not a SCAN of every key (every listing of builds asks which queues are served).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import redis
from packaging.utils import canonicalize_name

from builder.buildlog import DEFAULT_HEAD_BYTES, DEFAULT_TAIL_BYTES, stored_limit
from builder.record_listing import Position, find_ids, index_sizes

PREFIX = "wheelyard:"
ACTIVE = ("queued", "building", "waiting-for-capability")
DONE = ("published", "mirrored", "failed")
STATUSES = ("queued", "waiting-for-worker", "waiting-for-capability", "building", "published", "mirrored", "failed")
WORKER_TTL = 30

ALL_BUILDS = f"{PREFIX}builds"
REMEDIED = f"{PREFIX}idx:remedied"  # the builds a remedy made
WORKERS = f"{PREFIX}workers"  # the names of registered workers; each one's registration is its own key


@dataclass
class BuildRecord:
    id: str
    name: str
    version: str
    target: str
    requirement: str
    from_source: bool = False
    queue: str = ""
    status: str = "queued"
    step: str | None = None
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    worker: str | None = None
    # How many times a worker started the build (a redelivered job starts it again).
    runs: int = 0
    # Each attempt of the build: {"number", "remedy" (name or null), "status", "diagnosis"
    # (primary category or null), "log" (the name of that attempt's stored log)}.
    attempts: list[dict[str, Any]] = field(default_factory=list)
    remedy: str | None = None  # the remedy that made the published wheel
    # How many times the build was put back in its queue after its worker was lost: a job
    # carries the number it was sent with, and one sent before the last recovery is stale.
    recoveries: int = 0
    wheel: str | None = None
    sha256: str | None = None
    source: str | None = None  # the sdist built, or the upstream wheel mirrored
    error: dict[str, Any] | None = None
    diagnosis: dict[str, Any] | None = None
    ruleset: str | None = None
    capabilities: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    # A build that failed for a capability its worker lacked (builder.routing): what it waits
    # for, and every capability it was routed for (the worker that runs it must have them all).
    missing_capability: str | None = None
    required_capabilities: list[str] = field(default_factory=list)
    # The nearest releases of the project that work for this target (builder.nearest), when it failed.
    nearest_release: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        return target_key(self.name, self.version, self.target)

    @property
    def duration(self) -> float | None:
        if self.started_at is None:
            return None
        return round((self.finished_at or time.time()) - self.started_at, 3)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> BuildRecord:
        data = json.loads(text)
        if isinstance(data.get("attempts"), int):  # records written before attempts were listed
            data["runs"] = data.pop("attempts")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def target_key(name: str, version: str, target: str) -> str:
    return f"{name}=={version}@{target}"


def status_index(status: str) -> str:
    return f"{PREFIX}idx:status:{status}"


def name_index(name: str) -> str:
    return f"{PREFIX}idx:name:{canonicalize_name(name)}"


def target_index(target: str) -> str:
    return f"{PREFIX}idx:target:{target}"


def queued_index(queue: str) -> str:
    return f"{PREFIX}idx:queued:{queue}"


def index_keys(record: BuildRecord) -> set[str]:
    """Every index a record belongs in."""
    keys = {ALL_BUILDS, status_index(record.status), name_index(record.name), target_index(record.target)}
    if record.status == "queued":
        keys.add(queued_index(record.queue))
    if getattr(record, "remedy", None):
        keys.add(REMEDIED)
    return keys


class BuildStore:
    """Reads and writes build records, logs and worker registrations in Redis."""

    def __init__(
        self, client: redis.Redis, log_limit: int = stored_limit(DEFAULT_HEAD_BYTES, DEFAULT_TAIL_BYTES)
    ) -> None:
        self.redis = client
        self.log_limit = log_limit

    # -- records ---------------------------------------------------------------------------
    def get(self, build_id: str) -> BuildRecord | None:
        raw = self.redis.get(f"{PREFIX}build:{build_id}")
        return BuildRecord.from_json(raw) if raw else None

    def save(self, record: BuildRecord) -> None:
        """Write a record whole, moving it between indexes in the same transaction."""
        self._write(record.id, lambda old: record)

    def update(self, build_id: str, **changes: Any) -> BuildRecord:
        """Change fields of a record: read, changed and written (with its indexes) atomically."""

        def change(record: BuildRecord | None) -> BuildRecord:
            if record is None:
                raise KeyError(build_id)
            for name, value in changes.items():
                setattr(record, name, value)
            return record

        return self._write(build_id, change)

    def update_if(self, build_id: str, condition: Callable[[BuildRecord], bool], **changes: Any) -> BuildRecord | None:
        """Change fields of a record only if ``condition`` holds for it as stored, in the same
        transaction; the record written, or None (no record, or the condition did not hold)."""

        def change(record: BuildRecord | None) -> BuildRecord | None:
            if record is None or not condition(record):
                return None
            for name, value in changes.items():
                setattr(record, name, value)
            return record

        return self._write_if(build_id, change)

    def _write(self, build_id: str, change: Callable[[BuildRecord | None], BuildRecord]) -> BuildRecord:
        written = self._write_if(build_id, change)
        assert written is not None
        return written

    def _write_if(
        self, build_id: str, change: Callable[[BuildRecord | None], BuildRecord | None]
    ) -> BuildRecord | None:
        """The record ``change`` makes of the stored one, written with its index moves in one
        MULTI/EXEC; WATCH on the record makes a concurrent write start this one again. When
        ``change`` returns None nothing is written."""
        key = f"{PREFIX}build:{build_id}"
        written: BuildRecord | None = None

        def write(pipe: Any) -> None:
            nonlocal written
            raw = pipe.get(key)
            old = BuildRecord.from_json(raw) if raw else None
            before = index_keys(old) if old is not None else set()
            record = change(old)
            if record is None:
                written = None
                return
            after = index_keys(record)
            pipe.multi()
            pipe.set(key, record.to_json())
            for index in before - after:
                pipe.zrem(index, record.id)
            for index in after:
                pipe.zadd(index, {record.id: record.created_at})
            written = record

        # redis-py's transaction() is the WATCH/MULTI loop: a concurrent write runs ``write`` again.
        self.redis.transaction(write, key)
        return written

    def for_key(self, key: str) -> BuildRecord | None:
        build_id = self.redis.get(f"{PREFIX}key:{key}")
        if not build_id:
            return None
        return self.get(build_id.decode() if isinstance(build_id, bytes) else str(build_id))

    def lock(self, key: str) -> Any:
        return self.redis.lock(f"{PREFIX}lock:{key}", timeout=30, blocking_timeout=30)

    def create(
        self,
        *,
        name: str,
        version: str,
        target: str,
        requirement: str,
        from_source: bool,
        queue: str,
    ) -> BuildRecord:
        """A new record, registered as the one build of its key. Call under ``lock(key)``."""
        record = BuildRecord(
            id=uuid.uuid4().hex[:16],
            name=name,
            version=version,
            target=target,
            requirement=requirement,
            from_source=from_source,
            queue=queue,
            created_at=time.time(),
        )
        pipe = self.redis.pipeline()
        pipe.set(f"{PREFIX}build:{record.id}", record.to_json())
        for index in index_keys(record):
            pipe.zadd(index, {record.id: record.created_at})
        pipe.set(f"{PREFIX}key:{record.key}", record.id)
        pipe.execute()
        return record

    def discard(self, record: BuildRecord) -> None:
        """Remove a record that was never queued from every index, and its key if the key still names it."""
        build = f"{PREFIX}build:{record.id}"
        key = f"{PREFIX}key:{record.key}"

        def remove(pipe: Any) -> None:
            raw = pipe.get(build)
            # The stored record's indexes, and the given one's: whichever is newer, both go.
            indexes = index_keys(record) | (index_keys(BuildRecord.from_json(raw)) if raw else set())
            owner = pipe.get(key)
            pipe.multi()
            pipe.delete(build)
            for index in indexes:
                pipe.zrem(index, record.id)
            if owner is not None and _text(owner) == record.id:
                pipe.delete(key)

        self.redis.transaction(remove, build, key)

    def records(self, *, limit: int = 100, offset: int = 0) -> Iterator[BuildRecord]:
        ids = self.redis.zrevrange(ALL_BUILDS, offset, offset + limit - 1)
        if not ids:
            return
        raws = self.redis.mget([f"{PREFIX}build:{_text(i)}" for i in ids])
        for raw in raws:
            if raw:
                yield BuildRecord.from_json(raw)

    def count(self) -> int:
        return int(self.redis.zcard(ALL_BUILDS))

    def sizes(self, keys: Sequence[str]) -> list[int]:
        """How many ids each index key holds, at one moment (``record_listing.index_sizes``)."""
        return index_sizes(self.redis, keys)

    def find(
        self,
        clauses: Sequence[Sequence[str]] = (),
        *,
        exclude: Sequence[str] = (),
        limit: int = 100,
        after: Position | None = None,
    ) -> tuple[list[BuildRecord], Position | None]:
        """Records newest first that are in every clause (in any index key of it) and in no key
        of ``exclude``: at most ``limit``, from after ``after``; and where the next page starts,
        None when the listing is exhausted (``builder.record_listing``)."""
        found, following = find_ids(self.redis, clauses or [[ALL_BUILDS]], exclude=exclude, limit=limit, after=after)
        records = []
        if found:
            for raw in self.redis.mget([f"{PREFIX}build:{i}" for i in found]):
                if raw:  # discarded since its id was read
                    records.append(BuildRecord.from_json(raw))
        return records, following

    # -- logs ------------------------------------------------------------------------------
    def append_log(self, build_id: str, data: bytes) -> bool:
        """Append to a build's stored log (builder/buildlog.py decides what is kept: head, marker,
        tail); False once it has reached ``log_limit``."""
        key = f"{PREFIX}log:{build_id}"
        size = int(self.redis.strlen(key))
        if size >= self.log_limit:
            return False
        self.redis.append(key, data[: self.log_limit - size])
        return True

    def read_log(self, build_id: str, start: int = 0) -> bytes:
        data = self.redis.getrange(f"{PREFIX}log:{build_id}", start, -1) or b""
        return data if isinstance(data, bytes) else str(data).encode()

    def clear_log(self, build_id: str) -> None:
        self.redis.delete(f"{PREFIX}log:{build_id}")

    def keep_attempt_log(self, build_id: str, name: str) -> None:
        """The stored log so far becomes the log ``name`` of an attempt; the build's log starts empty."""
        key = f"{PREFIX}log:{build_id}"
        if self.redis.exists(key):
            self.redis.rename(key, f"{key}:{name}")

    def read_attempt_log(self, build_id: str, name: str) -> bytes | None:
        """The stored log of an earlier attempt (``keep_attempt_log``), None when there is none."""
        data = self.redis.get(f"{PREFIX}log:{build_id}:{name}")
        return None if data is None else data if isinstance(data, bytes) else str(data).encode()

    def replace_log(self, build_id: str, data: bytes) -> None:
        """Set a build's whole stored log at once (within the limit): a worker that lost chunks while
        Redis was away writes it again from its file (``buildlog.stored_form``)."""
        self.redis.set(f"{PREFIX}log:{build_id}", data[: self.log_limit])

    # -- workers ---------------------------------------------------------------------------
    def register_worker(self, name: str, info: dict[str, Any], ttl: int = WORKER_TTL) -> None:
        """A worker's registration, live for ``ttl`` s unless renewed; its name also goes in the
        registry of workers, so that listing them reads their keys and no others."""
        pipe = self.redis.pipeline()
        pipe.set(f"{PREFIX}worker:{name}", json.dumps(info), ex=ttl)
        pipe.sadd(WORKERS, name)
        pipe.execute()

    def unregister_worker(self, name: str) -> None:
        pipe = self.redis.pipeline()
        pipe.delete(f"{PREFIX}worker:{name}")
        pipe.srem(WORKERS, name)
        pipe.execute()

    def workers(self) -> dict[str, dict[str, Any]]:
        names = sorted(_text(n) for n in self.redis.smembers(WORKERS))
        if not names:
            return {}
        raws = self.redis.mget([f"{PREFIX}worker:{n}" for n in names])
        out = {n: json.loads(raw) for n, raw in zip(names, raws, strict=True) if raw}
        expired = [n for n, raw in zip(names, raws, strict=True) if not raw]
        if expired:
            self._forget_workers(expired)
        return out

    def _forget_workers(self, names: list[str]) -> None:
        """Take registrations that expired out of the registry, unless one came back meanwhile."""
        keys = [f"{PREFIX}worker:{n}" for n in names]
        pipe: Any
        with self.redis.pipeline() as pipe:
            try:
                pipe.watch(*keys)
                if pipe.exists(*keys):
                    return  # a worker registered again: the next listing forgets the others
                pipe.multi()
                pipe.srem(WORKERS, *names)
                pipe.execute()
            except redis.WatchError:
                pass

    def served_queues(self) -> dict[str, list[str]]:
        """Queue name -> the live workers that serve it."""
        served: dict[str, list[str]] = {}
        for name, info in self.workers().items():
            for queue in info.get("queues", []):
                served.setdefault(queue, []).append(name)
        return served

    def capabilities_for(self, queue: str) -> str:
        """The combined capability fingerprint of the live workers of a queue."""
        prints = sorted(
            info.get("fingerprint", "") for info in self.workers().values() if queue in info.get("queues", [])
        )
        return "|".join(prints)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=30, health_check_interval=15)
