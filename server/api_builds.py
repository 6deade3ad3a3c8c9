"""The API's builds: requests for them, their listing and counts, each build and its log."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import Response

from builder.errors import AttemptNotFound, BuildNotFound, InvalidCursor, InvalidFilter
from builder.record_listing import Position
from builder.records import STATUSES
from server.api_models import (
    CURSOR_PATTERN,
    BuildList,
    BuildRequest,
    BuildSummary,
    BuildView,
    Submitted,
    error_responses,
)
from server.api_state import SharedParts, require_token
from server.service import count_builds, find_builds, present

router = APIRouter()

BuildId = Annotated[str, PathParam(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


@router.post(
    "/api/builds",
    status_code=202,
    dependencies=[Depends(require_token)],
    response_model=Submitted,
    responses=error_responses(400, 401, 404, 413, 502),
)
def create_builds(body: BuildRequest, request: Request, shared: SharedParts) -> dict[str, Any]:
    submissions = shared.service.submit(body.requirement, body.targets, from_source=body.from_source, retry=body.retry)
    served = shared.store.served_queues()
    return {"builds": [present(s.record, served, _base(request)) | {"created": s.created} for s in submissions]}


@router.get("/api/builds", response_model=BuildList, responses=error_responses(400, 503))
def list_builds(
    request: Request,
    shared: SharedParts,
    name: Annotated[str | None, Query(max_length=200)] = None,
    # Checked below, to refuse an unknown status as "invalid-filter"; the spec lists the values.
    status: Annotated[str | None, Query(max_length=32, json_schema_extra={"enum": list(STATUSES)})] = None,
    target: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[
        str | None,
        Query(
            max_length=128,
            pattern=CURSOR_PATTERN,
            description="the ``next`` of the previous page: the builds after it",
        ),
    ] = None,
) -> dict[str, Any]:
    """Builds newest first, filtered over all of them by the store's indexes."""
    if status is not None and status not in STATUSES:
        raise InvalidFilter(status, STATUSES)
    after = None
    if cursor is not None:
        try:
            after = Position.parse(cursor)
        except ValueError:
            raise InvalidCursor(cursor) from None
    store = shared.store
    served = store.served_queues()
    records, following = find_builds(
        store, served, name=name or None, status=status, target=target or None, limit=limit, after=after
    )
    base = _base(request)
    return {
        "builds": [present(r, served, base) for r in records],
        "total": store.count(),
        "next": following.token() if following is not None else None,
    }


# Before /api/builds/{build_id}, which would take "summary" for a build id.
@router.get("/api/builds/summary", response_model=BuildSummary, responses=error_responses(503))
def summarize_builds(shared: SharedParts) -> dict[str, Any]:
    """How many builds have each status, over all of them: the sizes of the store's indexes."""
    counts = count_builds(shared.store, shared.store.served_queues())
    return {"total": counts.total, "counts": counts.by_status}


@router.get("/api/builds/{build_id}", response_model=BuildView, responses=error_responses(404))
def get_build(build_id: BuildId, request: Request, shared: SharedParts) -> dict[str, Any]:
    record = shared.store.get(build_id)
    if record is None:
        raise BuildNotFound(build_id)
    return present(record, shared.store.served_queues(), _base(request))


@router.get(
    "/api/builds/{build_id}/log",
    response_class=Response,
    responses={
        200: {
            "description": "the build's log from ``offset``; X-Log-Offset is where to read next",
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "headers": {"X-Log-Offset": {"schema": {"type": "integer"}}},
        },
        **error_responses(404),
    },
)
def get_log(
    build_id: BuildId,
    shared: SharedParts,
    offset: Annotated[int, Query(ge=0)] = 0,
    attempt: Annotated[int | None, Query(ge=1, description="the attempt whose log to read (default: the last)")] = None,
) -> Response:
    record = shared.store.get(build_id)
    if record is None:
        raise BuildNotFound(build_id)
    data = shared.store.read_log(build_id, offset)
    if attempt is not None and attempt < len(record.attempts):
        earlier = shared.store.read_attempt_log(build_id, str(record.attempts[attempt - 1].get("log")))
        data = (earlier or b"")[offset:]
    elif attempt is not None and attempt > max(len(record.attempts), 1):
        raise AttemptNotFound(build_id, len(record.attempts), attempt)
    return Response(
        data,
        media_type="text/plain; charset=utf-8",
        headers={"X-Log-Offset": str(offset + len(data))},
    )


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")
