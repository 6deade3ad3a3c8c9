"""The operator's panels of the dashboard: readiness of the watch lists, builds waiting for a
capability, builds a remedy made (the clients' misses are ``GET /api/misses``).

Each answers from what Redis indexes, never a scan of the builds: readiness from the watch
runs' record of each closure and the builds of its missing wheels (server/watch/readiness.py);
the builds waiting for a capability from the status index of "waiting-for-capability"; the
builds a remedy made from the index of remedied builds (builder/records.py). A panel lists the
newest ``limit`` and counts them all by capability or remedy over at most ``COUNTED`` of them,
so a scrape costs what the panel shows, whatever the number of builds.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Annotated, Any

import redis
from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from builder.records import PREFIX, REMEDIED, BuildStore, status_index
from server.watch.readiness import current_readiness

WAITING = "waiting-for-capability"
COUNTED = 1000  # records read to count a panel's builds by capability or remedy, at most


class Readiness(BaseModel):
    lists: list[dict[str, Any]] = Field(
        description="by list: its last run (at) and per target the closure's size (total), how many wheels "
        "the index has (on_index, share) and each missing one with its build and why it is missing"
    )


class Panel(BaseModel):
    total: int = Field(description="how many builds the panel is about")
    counted: int = Field(description="how many of them the counts cover (the newest, at most 1000)")
    counts: dict[str, int] = Field(description="by capability (or remedy): how many builds")
    builds: list[dict[str, Any]] = Field(description="the newest of them")


def dashboard_router(store: BuildStore) -> APIRouter:
    router = APIRouter(tags=["dashboard"])

    @router.get("/api/dashboard/readiness", response_model=Readiness)
    def readiness() -> dict[str, Any]:
        """Per watch list and target: the share of its closure on the index, what is missing and why."""
        return {"lists": current_readiness(store.redis, store.served_queues())}

    @router.get("/api/dashboard/waiting-for-capability", response_model=Panel)
    def waiting(limit: Annotated[int, Query(ge=1, le=200)] = 50) -> dict[str, Any]:
        """Builds waiting for a capability no live worker has, with the capability."""
        return panel(store.redis, status_index(WAITING), "missing_capability", limit)

    @router.get("/api/dashboard/remedies", response_model=Panel)
    def remedies(limit: Annotated[int, Query(ge=1, le=200)] = 50) -> dict[str, Any]:
        """Builds whose wheel a remedy made, with the remedy."""
        return panel(store.redis, REMEDIED, "remedy", limit)

    return router


def panel(client: redis.Redis, index: str, field: str, limit: int) -> dict[str, Any]:
    """The newest ``limit`` builds of ``index`` and counts by ``field`` over the newest ``COUNTED``."""
    pipe = client.pipeline(transaction=True)
    pipe.zcard(index)
    pipe.zrevrange(index, 0, COUNTED - 1)
    total, ids = pipe.execute()
    records = (
        [_shown(json.loads(raw)) for raw in client.mget([f"{PREFIX}build:{_text(i)}" for i in ids]) if raw]
        if ids
        else []
    )
    counts = Counter(str(r.get(field) or "unknown") for r in records)
    return {
        "total": int(total),
        "counted": len(records),
        "counts": dict(counts.most_common()),
        "builds": records[:limit],
    }


_SHOWN = (
    "id",
    "name",
    "version",
    "target",
    "status",
    "created_at",
    "finished_at",
    "missing_capability",
    "remedy",
    "wheel",
)


def _shown(record: dict[str, Any]) -> dict[str, Any]:
    shown = {key: record.get(key) for key in _SHOWN}
    primary = (record.get("diagnosis") or {}).get("primary") or {}
    shown["category"] = primary.get("category")
    shown["explanation"] = primary.get("explanation")
    return shown


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
