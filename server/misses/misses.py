"""Misses in Redis: (project, client target) -> count, last seen, why; bounded in memory.

Three keys hold them, written together by one Lua script (atomic, one round trip):
``wheelyard:misses`` (a sorted set of ``project target`` members scored by last seen),
``wheelyard:misses:count``, ``wheelyard:misses:reason`` and ``wheelyard:misses:build`` (hashes by
the same member; the last says what building on the miss did, where a deployment does).
Past ``limit`` members the least recently seen are dropped, so a client asking for
endless made-up names costs a bounded amount of memory. A hit for a (project, target)
forgets its miss: the index serves it now.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, cast

import redis

from builder.records import PREFIX

MISSES = f"{PREFIX}misses"
COUNTS = f"{PREFIX}misses:count"
REASONS = f"{PREFIX}misses:reason"
BUILDS = f"{PREFIX}misses:build"  # what build-on-miss did about it, where it is on
DEFAULT_LIMIT = 10_000
# Why a client was not served: the index has no such project, or none of its wheels fits.
NO_PROJECT = "no-project"
NO_WHEEL = "no-wheel-for-target"

_RECORD = """
local member, now, reason, limit = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
redis.call('ZADD', KEYS[1], now, member)
local count = redis.call('HINCRBY', KEYS[2], member, tonumber(ARGV[5]))
redis.call('HSET', KEYS[3], member, reason)
local excess = redis.call('ZCARD', KEYS[1]) - limit
if excess > 0 then
  local dropped = redis.call('ZRANGE', KEYS[1], 0, excess - 1)
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, excess - 1)
  redis.call('HDEL', KEYS[2], unpack(dropped))
  redis.call('HDEL', KEYS[3], unpack(dropped))
  redis.call('HDEL', KEYS[4], unpack(dropped))
end
return count
"""


@dataclass(frozen=True)
class Miss:
    project: str  # PEP 503 name
    target: str  # the client's build identifier
    count: int
    last_seen: float
    reason: str
    build: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "target": self.target,
            "count": self.count,
            "last_seen": self.last_seen,
            "reason": self.reason,
            "build": self.build,
        }


class MissStore:
    def __init__(self, client: redis.Redis, limit: int = DEFAULT_LIMIT) -> None:
        self.client = client
        self.limit = limit
        self._record = client.register_script(_RECORD)

    def record(self, project: str, target: str, reason: str, now: float | None = None, *, times: int = 1) -> int:
        """Count a miss (``times`` requests of it); returns how many times it has been seen (since it was
        last dropped)."""
        member = f"{project} {target}"
        stamp = time.time() if now is None else now
        keys = [MISSES, COUNTS, REASONS, BUILDS]
        return int(self._record(keys=keys, args=[member, repr(stamp), reason, self.limit, times]))

    def forget(self, project: str, target: str) -> None:
        member = f"{project} {target}"
        with self.client.pipeline(transaction=True) as pipe:
            pipe.zrem(MISSES, member)
            pipe.hdel(COUNTS, member)
            pipe.hdel(REASONS, member)
            pipe.hdel(BUILDS, member)
            pipe.execute()

    def note_build(self, project: str, target: str, outcome: str) -> None:
        """Say what building on this miss did (kept only while the miss is)."""
        member = f"{project} {target}"
        # Only for a miss that is still recorded: a dropped one must not leave its note behind.
        if self.client.zscore(MISSES, member) is not None:
            self.client.hset(BUILDS, member, outcome[:500])

    def newest(self, limit: int = 100) -> list[Miss]:
        """Misses, most recently seen first."""
        entries = cast(list[tuple[bytes, float]], self.client.zrevrange(MISSES, 0, limit - 1, withscores=True))
        members = [_text(member) for member, _ in entries]
        if not members:
            return []
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hmget(COUNTS, members)
            pipe.hmget(REASONS, members)
            pipe.hmget(BUILDS, members)
            counts, reasons, builds = pipe.execute()
        out = []
        for member, (_, score), count, reason, build in zip(members, entries, counts, reasons, builds, strict=True):
            if count is None:
                continue  # dropped (or forgotten) since the listing was read
            project, _, target = member.partition(" ")
            note = None if build is None else _text(build)
            out.append(Miss(project, target, int(count), float(score), _text(reason or b""), note))
        return out

    def total(self) -> int:
        return int(self.client.zcard(MISSES))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
