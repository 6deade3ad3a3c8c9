"""Build records: every build is a record with its status, timings, outcome and log.

Records live in Redis so that the API and workers on other machines share them without
a shared disk. One build exists per (name, version, target): creating one takes a
redis-py lock on that key, so concurrent requests for the same target share one build id.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import redis

PREFIX = "wheelyard:"
ACTIVE = ("queued", "building")
DONE = ("published", "mirrored", "failed")
STATUSES = ("queued", "waiting-for-worker", "building", "published", "mirrored", "failed")
WORKER_TTL = 30


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
    attempts: int = 0
    wheel: str | None = None
    sha256: str | None = None
    source: str | None = None  # the sdist built, or the upstream wheel mirrored
    error: dict[str, Any] | None = None
    diagnosis: dict[str, Any] | None = None
    ruleset: str | None = None
    capabilities: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

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
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def target_key(name: str, version: str, target: str) -> str:
    return f"{name}=={version}@{target}"


class BuildStore:
    """Reads and writes build records, logs and worker registrations in Redis."""

    def __init__(self, client: redis.Redis, log_limit: int = 16 * 1024**2) -> None:
        self.redis = client
        self.log_limit = log_limit

    # -- records ---------------------------------------------------------------------------
    def get(self, build_id: str) -> BuildRecord | None:
        raw = self.redis.get(f"{PREFIX}build:{build_id}")
        return BuildRecord.from_json(raw) if raw else None

    def save(self, record: BuildRecord) -> None:
        pipe = self.redis.pipeline()
        pipe.set(f"{PREFIX}build:{record.id}", record.to_json())
        pipe.zadd(f"{PREFIX}builds", {record.id: record.created_at})
        pipe.execute()

    def update(self, build_id: str, **changes: Any) -> BuildRecord:
        record = self.get(build_id)
        if record is None:
            raise KeyError(build_id)
        for name, value in changes.items():
            setattr(record, name, value)
        self.save(record)
        return record

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
        pipe.zadd(f"{PREFIX}builds", {record.id: record.created_at})
        pipe.set(f"{PREFIX}key:{record.key}", record.id)
        pipe.execute()
        return record

    def discard(self, record: BuildRecord) -> None:
        """Remove a record that was never queued, and its key if the key still names it."""
        key = f"{PREFIX}key:{record.key}"
        pipe = self.redis.pipeline()
        pipe.delete(f"{PREFIX}build:{record.id}")
        pipe.zrem(f"{PREFIX}builds", record.id)
        pipe.execute()
        if _text(self.redis.get(key) or b"") == record.id:
            self.redis.delete(key)

    def records(self, *, limit: int = 100, offset: int = 0) -> Iterator[BuildRecord]:
        ids = self.redis.zrevrange(f"{PREFIX}builds", offset, offset + limit - 1)
        if not ids:
            return
        raws = self.redis.mget([f"{PREFIX}build:{_text(i)}" for i in ids])
        for raw in raws:
            if raw:
                yield BuildRecord.from_json(raw)

    def count(self) -> int:
        return int(self.redis.zcard(f"{PREFIX}builds"))

    # -- logs ------------------------------------------------------------------------------
    def append_log(self, build_id: str, data: bytes) -> bool:
        """Append to a build's log; False once the log has reached its limit."""
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

    def replace_log(self, build_id: str, data: bytes) -> None:
        """Set a build's whole log at once (within the limit): a worker that lost chunks while
        Redis was away writes it again from its file."""
        self.redis.set(f"{PREFIX}log:{build_id}", data[: self.log_limit])

    # -- workers ---------------------------------------------------------------------------
    def register_worker(self, name: str, info: dict[str, Any], ttl: int = WORKER_TTL) -> None:
        self.redis.set(f"{PREFIX}worker:{name}", json.dumps(info), ex=ttl)

    def unregister_worker(self, name: str) -> None:
        self.redis.delete(f"{PREFIX}worker:{name}")

    def workers(self) -> dict[str, dict[str, Any]]:
        out = {}
        for key in self.redis.scan_iter(f"{PREFIX}worker:*"):
            raw = self.redis.get(key)
            if raw:
                out[key.decode()[len(PREFIX) + 7 :]] = json.loads(raw)
        return out

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
