"""What the routes of one API app share (``app.state.shared``): its settings, Redis, build store
and build service; and the token check of the routes that queue or change things."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated, cast

import redis
from fastapi import Depends, Header, Request

from builder.config import Settings
from builder.errors import Unauthorized
from builder.records import BuildStore
from server.service import BuildService


@dataclass(frozen=True)
class Shared:
    settings: Settings
    client: redis.Redis
    store: BuildStore
    service: BuildService


def shared(request: Request) -> Shared:
    return cast(Shared, request.app.state.shared)


# A route's parameter of this type is given the app's shared parts.
SharedParts = Annotated[Shared, Depends(shared)]


def require_token(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
    """Refuses a request without the API's token, where one is set (``WHEELYARD_API_TOKEN``)."""
    token = shared(request).settings.api_token
    if not token:
        return
    if authorization is None or not hmac.compare_digest(authorization.encode(), f"Bearer {token}".encode()):
        raise Unauthorized()
