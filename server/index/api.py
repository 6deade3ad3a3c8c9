"""The index's routes in the API: yanking a release (PEP 592) and un-yanking it.

The API shares the index's data directory (as ``wheelyard up`` and compose.yaml run them),
so a yank rewrites the project's static pages at once; the files stay downloadable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from builder.config import Settings
from server.index.site import IndexSite

MAX_REASON = 1000


class YankRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=200, examples=["markupsafe"])
    version: str = Field(min_length=1, max_length=100, examples=["3.0.2"])
    reason: str = Field(default="", max_length=MAX_REASON, description="shown to clients (pip prints it)")
    yanked: bool = Field(default=True, description="false un-yanks the release")


class YankResult(BaseModel):
    name: str
    version: str
    yanked: bool
    reason: str | None
    files: list[str]


def index_router(settings: Settings, require_token: Callable[..., None]) -> APIRouter:
    router = APIRouter()
    site = IndexSite(settings.data_dir)

    @router.post("/api/index/yank", dependencies=[Depends(require_token)], response_model=YankResult)
    def yank(body: YankRequest) -> dict[str, Any]:
        """Yank (or with ``yanked: false`` un-yank) every file of a release on the index."""
        reason = body.reason if body.yanked else None
        files = site.set_yanked(body.name, body.version, reason)
        return {"name": body.name, "version": body.version, "yanked": body.yanked, "reason": reason, "files": files}

    return router
