"""Listing build records from their indexes: which ids, newest first, are in every clause of a
filter, one page at a time (``builder.records`` keeps the indexes; this reads them).

An index is a sorted set of build ids scored by ``created_at``. The clause with the fewest ids
drives: its keys are read newest first in batches (a merge when it has several) and each batch
is checked against the other keys with ZMSCORE, so a page costs what it reads of the smallest
clause, not the number of builds. A page ends at a ``Position``: the next one starts after it.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

import redis

_MAX_BATCH = 1000  # ids read from an index (and checked against the others) per round trip, at most


@dataclass(frozen=True)
class Position:
    """A place in a listing, newest first: the build it stopped at; the next page starts after it."""

    created_at: float
    id: str

    def token(self) -> str:
        return f"{self.created_at!r}:{self.id}"

    @classmethod
    def parse(cls, token: str) -> Position:
        """The position a ``token()`` names; ValueError for anything else."""
        score, sep, build_id = token.partition(":")
        value = float(score)  # one too large to be a float is inf: after it comes everything
        if not sep or not build_id or math.isnan(value):
            raise ValueError(token)
        return cls(value, build_id)


def index_sizes(client: redis.Redis, keys: Sequence[str]) -> list[int]:
    """How many ids each index key holds, read in one MULTI/EXEC: as every record write moves
    its indexes in one too, the sizes are of one moment (a record is in one status index)."""
    if not keys:
        return []
    pipe = client.pipeline(transaction=True)
    for key in keys:
        pipe.zcard(key)
    return [int(n) for n in pipe.execute()]


def find_ids(
    client: redis.Redis,
    clauses: Sequence[Sequence[str]],
    *,
    exclude: Sequence[str] = (),
    limit: int = 100,
    after: Position | None = None,
) -> tuple[list[str], Position | None]:
    """Ids newest first that are in every clause (in any index key of it) and in no key of
    ``exclude``: at most ``limit``, from after ``after``; and where the next page starts, None
    when the listing is exhausted."""
    wanted = [list(dict.fromkeys(clause)) for clause in clauses]
    if limit < 1 or not wanted or any(not clause for clause in wanted):
        return [], None
    sizes = iter(index_sizes(client, [key for clause in wanted for key in clause]))
    totals = [sum(next(sizes) for _ in clause) for clause in wanted]
    if min(totals) == 0:
        return [], None
    driver = wanted.pop(totals.index(min(totals)))
    stream = _distinct(
        heapq.merge(*(_walk(client, key, after, limit) for key in driver), reverse=True)
        if len(driver) > 1
        else _walk(client, driver[0], after, limit)
    )
    found: list[str] = []
    last: tuple[float, str] | None = None
    size = limit
    while len(found) < limit:
        batch = list(islice(stream, size))
        for (score, build_id), ok in zip(batch, _check(client, batch, wanted, exclude), strict=True):
            last = (score, build_id)
            if ok:
                found.append(build_id)
                if len(found) == limit:
                    break
        if len(batch) < size:
            break
        size = min(size * 2, _MAX_BATCH)
    following = Position(*last) if last is not None and len(found) == limit else None
    return found, following


def _walk(client: redis.Redis, key: str, after: Position | None, size: int) -> Iterator[tuple[float, str]]:
    """(created_at, id) of a sorted set, newest first (ties: greater id first, as ZREVRANGE),
    strictly after ``after``; read in chunks that grow from ``size``."""
    position = (after.created_at, after.id) if after is not None else None
    while True:
        if position is None:
            chunk: list[Any] = client.zrevrangebyscore(key, "+inf", "-inf", start=0, num=size, withscores=True)
            items = [(float(s), _text(m)) for m, s in chunk]
            more = len(chunk) == size
        else:
            score, build_id = position
            pipe = client.pipeline(transaction=False)
            # Those created at the same instant as the position and after it in the order, then the older.
            pipe.zrevrangebyscore(key, repr(score), repr(score), withscores=True)
            pipe.zrevrangebyscore(key, f"({score!r}", "-inf", start=0, num=size, withscores=True)
            ties, older = pipe.execute()
            items = [(float(s), _text(m)) for m, s in ties if _text(m) < build_id]
            items += [(float(s), _text(m)) for m, s in older]
            more = len(older) == size
        yield from items
        if not more or not items:
            return
        position = items[-1]
        size = min(size * 2, _MAX_BATCH)


def _check(
    client: redis.Redis, batch: list[tuple[float, str]], clauses: list[list[str]], exclude: Sequence[str]
) -> list[bool]:
    """Whether each id of ``batch`` is in every clause and in no key of ``exclude``."""
    ok = [True] * len(batch)
    if not batch or not (clauses or exclude):
        return ok
    ids = [build_id for _, build_id in batch]
    pipe = client.pipeline(transaction=False)
    for clause in clauses:
        for key in clause:
            pipe.zmscore(key, ids)
    for key in exclude:
        pipe.zmscore(key, ids)
    results = iter(pipe.execute())
    for clause in clauses:
        member = [False] * len(ids)
        for _ in clause:
            member = [m or s is not None for m, s in zip(member, next(results), strict=True)]
        ok = [o and m for o, m in zip(ok, member, strict=True)]
    for _ in exclude:
        ok = [o and s is None for o, s in zip(ok, next(results), strict=True)]
    return ok


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _distinct(items: Iterable[tuple[float, str]]) -> Iterator[tuple[float, str]]:
    """``items`` without repeats next to each other (a merge of indexes that share an id)."""
    previous = None
    for item in items:
        if item != previous:
            yield item
        previous = item
