"""``GET /api/index-requests`` (the index's report of a project page request) and ``GET /api/misses``.

The index calls the first for every request of ``/simple/<name>/``, with the client's own
``User-Agent``, and ignores the answer. Whatever it carries, the answer is 200: a path that
is no project page, or a client whose header names no target, is counted as nothing. A report
records a miss and may start a build (``build_on_miss``), so it needs the API token where the
API has one: the index carries it (``server/index/demand.py``, for nginx too), clients
never call this route themselves. The list of misses is a read, open as the build list is.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query
from packaging.utils import canonicalize_name
from pydantic import BaseModel, Field

from builder.config import Settings
from builder.metrics import metrics
from server.misses.holdings import Holdings, serves
from server.misses.misses import NO_PROJECT, NO_WHEEL, MissStore
from server.misses.on_miss import BuildOnMiss, Ensure, newest_with_closure
from server.misses.useragent import client_target
from server.private import is_private
from server.service import BuildService

# PEP 508 names, as the index's /simple/<name>/ takes them.
_PROJECT_PAGE = re.compile(r"/simple/(?P<name>[A-Za-z0-9]([A-Za-z0-9._-]{0,198}[A-Za-z0-9])?)/?", re.ASCII)


class IndexRequestSeen(BaseModel):
    outcome: str = Field(description="hit, miss, or ignored (not a project page, or no target in the User-Agent)")
    project: str | None = None
    target: str | None = Field(default=None, description="the client's build identifier, from its User-Agent")
    reason: str | None = Field(default=None, description=f"for a miss: {NO_PROJECT} or {NO_WHEEL}")
    build: str | None = Field(default=None, description="what building on the miss did, where it is on")


class MissView(BaseModel):
    project: str
    target: str
    count: int
    last_seen: float
    reason: str = Field(description=f"{NO_PROJECT}: the index has no such project; {NO_WHEEL}: none of its wheels fits")
    build: str | None = Field(description="what building on the miss did (null unless build-on-miss is on)")


class MissList(BaseModel):
    misses: list[MissView]
    total: int = Field(description="how many (project, target) misses are recorded")
    build_on_miss: bool


def project_from_path(path: str) -> str | None:
    """The PEP 503 name a request path asks for, or None when it is no project page."""
    if len(path) > 2048:
        return None
    unquoted = urllib.parse.unquote(path.split("?", 1)[0].split("#", 1)[0])
    match = _PROJECT_PAGE.fullmatch(unquoted)
    return canonicalize_name(match["name"]) if match else None


def _builder(settings: Settings, service: BuildService, misses: MissStore, ensure: Ensure | None) -> BuildOnMiss:
    asked = ensure or newest_with_closure(settings, service)
    cooldown, per_hour = settings.build_on_miss_cooldown, settings.build_on_miss_per_hour
    return BuildOnMiss(service.store.redis, misses, asked, cooldown=cooldown, per_hour=per_hour)


def create_demand_router(
    settings: Settings,
    service: BuildService,
    ensure: Ensure | None = None,
    *,
    require_token: Callable[..., None] | None = None,
) -> APIRouter:
    """The demand routes; ``ensure`` is what building on a miss asks for (by default the newest
    release for the client's target and its closure, through the ensure core)."""
    router = APIRouter(tags=["demand"])
    requests_seen = metrics().index_requests
    store = service.store
    client = store.redis
    misses = MissStore(client, limit=settings.miss_limit)
    holdings = Holdings(settings.wheel_dir)
    builder = _builder(settings, service, misses, ensure) if settings.build_on_miss else None

    @router.get(
        "/api/index-requests",
        response_model=IndexRequestSeen,
        dependencies=[Depends(require_token)] if require_token is not None else [],
    )
    def index_request(
        path: Annotated[str, Query(description="the request path, URL-encoded")] = "",
        count: Annotated[int, Query(ge=1, le=1_000_000, description="how many such requests this reports")] = 1,
        user_agent: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        project = project_from_path(path)
        target = client_target(user_agent)
        if project is None or target is None:
            requests_seen.labels("ignored", target.identifier if target else "none").inc(count)
            return {"outcome": "ignored", "project": project, "target": target and target.identifier}
        files = holdings.files(project)
        if files is not None and serves(files, target, settings.manylinux_glibc_max):
            requests_seen.labels("hit", target.identifier).inc(count)
            misses.forget(project, target.identifier)
            return {"outcome": "hit", "project": project, "target": target.identifier}
        requests_seen.labels("miss", target.identifier).inc(count)
        reason = NO_PROJECT if files is None else NO_WHEEL
        misses.record(project, target.identifier, reason, times=count)
        seen: dict[str, Any] = {"outcome": "miss", "project": project, "target": target.identifier, "reason": reason}
        if builder is not None:
            seen["build"] = builder.consider(project, target, private=is_private(store, project, files))
        return seen

    @router.get("/api/misses", response_model=MissList)
    def list_misses(limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
        """Projects clients asked the index for that it could not serve them, most recently seen first."""
        return {
            "misses": [m.to_dict() for m in misses.newest(limit)],
            "total": misses.total(),
            "build_on_miss": builder is not None,
        }

    return router
