"""``GET /api/watch``: what the last run of each watch list found."""

from __future__ import annotations

from typing import Any

import redis
from fastapi import APIRouter
from pydantic import BaseModel, Field

from server.watch.run import WatchState


class WatchStatus(BaseModel):
    lists: dict[str, dict[str, Any]] = Field(
        description="by list name: when it last ran (at), its counts by outcome, resolution errors, failed builds "
        "to retry, those that need a capability no live worker has (needs_capability) and those given up on"
    )


def watch_router(client: redis.Redis) -> APIRouter:
    router = APIRouter(tags=["watch"])
    state = WatchState(client)

    @router.get("/api/watch", response_model=WatchStatus)
    def watch_status() -> dict[str, Any]:
        return {"lists": state.all()}

    return router
