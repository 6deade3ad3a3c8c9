"""The HTTP API: build requests, their status and logs, workers, health.

Errors are rendered in one place (``_render_error``): every refusal has a stable
``error`` reference, a ``message`` that says what was wrong and a ``hint`` that says how
to fix it. No traceback ever reaches a client.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any

import kombu.exceptions
import redis
import requests
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from builder.config import Settings
from builder.errors import (
    AttemptNotFound,
    BuildNotFound,
    HttpError,
    InternalError,
    InvalidCursor,
    InvalidFilter,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    RedisUnavailable,
    RequestTooLarge,
    Unauthorized,
    WheelyardError,
)
from builder.records import STATUSES, BuildStore, Position, connect
from builder.targets import known_identifiers
from builder.tasks import BUILD_TASK, create_celery_app
from builder.upstream import SimpleIndex
from server.ensure.api import ENSURE_MAX_BODY_BYTES, ensure_router
from server.ensure.holdings import private_check
from server.index_api import index_router
from server.misses.routes import create_demand_router
from server.service import BuildService, count_builds, find_builds, present
from server.watch.routes import watch_router

logger = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"


def _identifier_pattern() -> str:
    """The build identifiers ``BuildTarget.parse`` accepts (cibuildwheel's list), and cibuildwheel's
    selector patterns, as a regular expression for the spec (the service checks what a pattern matches)."""
    identifiers = "|".join(re.escape(i) for i in sorted(known_identifiers()))
    selector = r"[a-z0-9_*?\[\]{},!-]*[*?\[{][a-z0-9_*?\[\]{},!-]*"
    return rf"^\s*(py3-none-any|{identifiers}|{selector})\s*$"


class BuildRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    requirement: str = Field(
        min_length=1,
        max_length=512,
        examples=["markupsafe==3.0.2"],
        description="a PEP 508 requirement naming one project on the upstream index, without a URL",
    )
    # The service checks identifiers (to refuse them as "invalid-build-identifier"); the spec shows the pattern.
    targets: list[
        Annotated[str, Field(min_length=1, max_length=64, json_schema_extra={"pattern": _identifier_pattern()})]
    ] = Field(min_length=1, max_length=32, examples=[["cp312-manylinux_x86_64"]])
    from_source: bool | None = Field(default=None, description="build from the sdist even where upstream has a wheel")
    retry: bool = Field(default=False, description="build again a target whose last build failed")


class ErrorBody(BaseModel):
    error: str = Field(description="a stable reference for the kind of refusal")
    message: str = Field(description="what was wrong")
    hint: str | None = Field(description="how to fix it")


class BuildView(BaseModel):
    """A build as the API shows it (``server.service.present``)."""

    model_config = ConfigDict(extra="allow")

    id: str
    name: str
    version: str
    target: str
    requirement: str
    from_source: bool
    status: str = Field(description=f"one of: {', '.join(STATUSES)}", examples=["published"])
    step: str | None
    queue: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    duration: float | None = Field(description="seconds since the build started, or that it took")
    worker: str | None
    runs: int = Field(description="how many times a worker started the build (a lost worker's build runs again)")
    attempts: list[dict[str, Any]] = Field(
        description='each attempt: {"number", "remedy" (name or null), "status", "diagnosis" (primary category or '
        'null), "log" (its name), "log_url"}'
    )
    remedy: str | None = Field(description="the remedy that made the published wheel, or null")
    wheel: str | None
    sha256: str | None
    source: str | None = Field(description="the sdist built, or the upstream wheel mirrored")
    error: dict[str, Any] | None
    diagnosis: dict[str, Any] | None = Field(description="for a failed build: what broke (diagnosis.primary)")
    timings: dict[str, float]
    log_url: str


class SubmittedBuild(BuildView):
    created: bool = Field(description="false when the request shares a build that existed already")


class Submitted(BaseModel):
    builds: list[SubmittedBuild]


class BuildList(BaseModel):
    builds: list[BuildView]
    total: int = Field(description="how many builds exist, whatever the filters")
    next: str | None = Field(
        default=None,
        description="pass as ``cursor`` for the page after this one; null when there is no more",
    )


class StatusCounts(BaseModel):
    """Builds by status, as the API shows each one's ``status``."""

    model_config = ConfigDict(populate_by_name=True)

    queued: int = Field(description="queued for a queue some live worker serves")
    waiting_for_worker: int = Field(
        alias="waiting-for-worker", description="queued for a queue no live worker serves (yet)"
    )
    building: int
    published: int
    mirrored: int
    failed: int


class BuildSummary(BaseModel):
    total: int = Field(description="how many builds exist: the sum of the counts")
    counts: StatusCounts


class WorkerList(BaseModel):
    workers: dict[str, dict[str, Any]] = Field(description="live workers by name: their queues, targets, capabilities")


class Health(BaseModel):
    status: str = Field(examples=["ok"])
    checks: dict[str, str]


# A listing's cursor (``Position.token``): created_at (a float as repr writes it) and a build id.
CURSOR_PATTERN = r"^-?[0-9]+(\.[0-9]+)?(e[+-]?[0-9]+)?:[A-Za-z0-9_-]{1,64}$"

# A build request is a few hundred bytes; anything much larger is refused before it is read whole.
MAX_BODY_BYTES = 64 * 1024


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody} for code in codes}


def _render_error(
    error: WheelyardError, status: int | None = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """The one place an error becomes an answer: its fields, with its class's status unless ``status``."""
    code = status if status is not None else error.status_code
    return JSONResponse(error.to_dict(), status_code=code if 400 <= code < 600 else 400, headers=headers)


_JSON_HINT = 'send JSON like {"requirement": "markupsafe==3.0.2", "targets": ["cp312-manylinux_x86_64"]}'
# The errors Starlette's own refusals are shown as (any other status: http-error).
_HTTP_ERRORS: dict[int, type[WheelyardError]] = {
    401: Unauthorized,
    404: NotFound,
    405: MethodNotAllowed,
    413: RequestTooLarge,
}


class BodyLimit:
    """Refuses request bodies over ``limit`` bytes with 413: at once by Content-Length, or as they stream in."""

    def __init__(self, app: ASGIApp, limit: int, larger: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.limit = limit
        self.larger = dict(larger or {})  # path -> its own limit (a lock file is larger than a request)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope.get("path") in self.larger:
            limited_app = BodyLimit(self.app, self.larger[scope["path"]])
            await limited_app(scope, receive, send)
            return
        declared = dict(scope.get("headers", ())).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            response = _render_error(RequestTooLarge(self.limit))
            await response(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # Raised while the route reads its body: FastAPI passes HTTP exceptions on to the handler.
                    raise StarletteHTTPException(413, RequestTooLarge(self.limit).message)
            return message

        await self.app(scope, limited, send)


def create_app(
    settings: Settings,
    redis_url: str,
    send: Callable[[str, str], None] | None = None,
) -> FastAPI:
    app = FastAPI(
        title="wheelyard",
        version="0.1.0",
        description="Builds the wheels pip cannot find, diagnoses failed builds, publishes to a private index.",
        responses=_errors(422, 503),
    )
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES, larger={"/api/ensure": ENSURE_MAX_BODY_BYTES})
    client = connect(redis_url)
    store = BuildStore(client, log_limit=settings.limits.log_bytes)
    upstream = SimpleIndex(settings.upstream_index, timeout=30)
    if send is None:
        celery = create_celery_app(settings, redis_url)

        def send(build_id: str, queue: str) -> None:
            celery.send_task(BUILD_TASK, args=[build_id], queue=queue)

    service = BuildService(
        store,
        upstream,
        send,
        from_source_default=settings.from_source_default,
        glibc_max=settings.manylinux_glibc_max,
        is_private=private_check(settings, store),
    )

    app.include_router(create_demand_router(settings, service))
    app.include_router(watch_router(client))

    # -- errors, in one place ----------------------------------------------------------------
    @app.exception_handler(WheelyardError)
    async def wheelyard_error(request: Request, exc: WheelyardError) -> JSONResponse:
        return _render_error(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        places = set()
        for err in exc.errors():
            loc = tuple(err.get("loc", ()))
            places.add(str(loc[0]) if loc else "body")
            if err.get("type") == "json_invalid":
                reason = (err.get("ctx") or {}).get("error", "invalid")
                problems.append(f"the body is not valid JSON: {reason} (at character {loc[-1] if loc else 0})")
                continue
            where = ".".join(str(p) for p in loc if p != "body") or "body"
            problems.append(f"{where}: {err.get('msg', 'invalid')}")
        return _render_error(InvalidRequest("; ".join(problems)[:2000], _validation_hint(places)))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            # FastAPI's only 400: a body it could not parse at all (e.g. JSON nested too deep to decode).
            return _render_error(InvalidRequest(str(exc.detail), _JSON_HINT), 400)
        kind = _HTTP_ERRORS.get(exc.status_code, HttpError)
        error = kind.__new__(kind)
        WheelyardError.__init__(error, str(exc.detail))  # Starlette's words, the class's hint
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Allow names every method of the path (RFC 9110), not only those of the first route matched.
            headers["Allow"] = ", ".join(sorted(_allowed_methods(app, request.scope)))
            error.hint = f"this path answers {headers['Allow']}"
        return _render_error(error, exc.status_code, headers=headers or None)

    @app.exception_handler(redis.RedisError)
    @app.exception_handler(kombu.exceptions.OperationalError)  # sending to the queue failed
    async def redis_down(request: Request, exc: Exception) -> JSONResponse:
        logger.warning("redis unavailable: %s", exc.__class__.__name__)
        return _render_error(
            RedisUnavailable(
                "the build queue (Redis) is not reachable; nothing was queued",
                "try again shortly; operators: check that Redis is running",
            ),
            503,
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s", request.url.path)
        return _render_error(InternalError("wheelyard failed to answer this request", "see the API's log"))

    # -- auth ------------------------------------------------------------------------------
    def require_token(authorization: Annotated[str | None, Header()] = None) -> None:
        if not settings.api_token:
            return
        expected = f"Bearer {settings.api_token}"
        if authorization is None or not hmac.compare_digest(authorization.encode(), expected.encode()):
            raise Unauthorized()

    app.include_router(index_router(settings, require_token), responses=_errors(400, 401, 404, 413))

    # -- routes ----------------------------------------------------------------------------
    @app.get("/api/health", response_model=Health, responses={503: {"model": Health, "description": "not ready"}})
    def health() -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            client.ping()
            checks["redis"] = "ok"
        except redis.RedisError:
            checks["redis"] = "unavailable"
        try:
            r = requests.get(settings.index_url.rstrip("/") + "/health", timeout=3)
            checks["index"] = "ok" if r.status_code == 200 else f"status {r.status_code}"
        except requests.RequestException:
            checks["index"] = "unavailable"
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ok" if ok else "degraded", "checks": checks}, status_code=200 if ok else 503)

    @app.post(
        "/api/builds",
        status_code=202,
        dependencies=[Depends(require_token)],
        response_model=Submitted,
        responses=_errors(400, 401, 404, 413, 502),
    )
    def create_builds(body: BuildRequest, request: Request) -> dict[str, Any]:
        submissions = service.submit(body.requirement, body.targets, from_source=body.from_source, retry=body.retry)
        served = store.served_queues()
        return {"builds": [present(s.record, served, _base(request)) | {"created": s.created} for s in submissions]}

    @app.get("/api/builds", response_model=BuildList, responses=_errors(400, 503))
    def list_builds(
        request: Request,
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
    @app.get("/api/builds/summary", response_model=BuildSummary, responses=_errors(503))
    def summarize_builds() -> dict[str, Any]:
        """How many builds have each status, over all of them: the sizes of the store's indexes."""
        counts = count_builds(store, store.served_queues())
        return {"total": counts.total, "counts": counts.by_status}

    @app.get("/api/builds/{build_id}", response_model=BuildView, responses=_errors(404))
    def get_build(build_id: Annotated[str, _id_path()], request: Request) -> dict[str, Any]:
        record = store.get(build_id)
        if record is None:
            raise _no_build(build_id)
        return present(record, store.served_queues(), _base(request))

    @app.get(
        "/api/builds/{build_id}/log",
        response_class=Response,
        responses={
            200: {
                "description": "the build's log from ``offset``; X-Log-Offset is where to read next",
                "content": {"text/plain": {"schema": {"type": "string"}}},
                "headers": {"X-Log-Offset": {"schema": {"type": "integer"}}},
            },
            **_errors(404),
        },
    )
    def get_log(
        build_id: Annotated[str, _id_path()],
        offset: Annotated[int, Query(ge=0)] = 0,
        attempt: Annotated[
            int | None, Query(ge=1, description="the attempt whose log to read (default: the last)")
        ] = None,
    ) -> Response:
        record = store.get(build_id)
        if record is None:
            raise _no_build(build_id)
        data = store.read_log(build_id, offset)
        if attempt is not None and attempt < len(record.attempts):
            earlier = store.read_attempt_log(build_id, str(record.attempts[attempt - 1].get("log")))
            data = (earlier or b"")[offset:]
        elif attempt is not None and attempt > max(len(record.attempts), 1):
            raise AttemptNotFound(build_id, len(record.attempts), attempt)
        return Response(
            data,
            media_type="text/plain; charset=utf-8",
            headers={"X-Log-Offset": str(offset + len(data))},
        )

    @app.get("/api/workers", response_model=WorkerList)
    def workers() -> dict[str, Any]:
        return {"workers": store.workers()}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def dashboard() -> HTMLResponse:
        page = STATIC / "dashboard.html"
        if page.exists():
            return HTMLResponse(page.read_text())
        return HTMLResponse("<h1>wheelyard</h1><p>See <a href='/docs'>/docs</a>.</p>")

    ensure_errors = _errors(400, 401, 404, 413, 502)
    app.include_router(ensure_router(settings, service), dependencies=[Depends(require_token)], responses=ensure_errors)
    return app


def _allowed_methods(app: FastAPI, scope: Scope) -> set[str]:
    methods: set[str] = set()
    for route in app.router.routes:
        if isinstance(route, Route) and route.methods and route.matches(scope)[0] != Match.NONE:
            methods |= route.methods
    return methods


def _validation_hint(places: set[str]) -> str:
    """How to fix a request refused by validation, for the part of it that was wrong."""
    if places <= {"body"}:
        return _JSON_HINT
    if places <= {"path"}:
        return "a build id is the 'id' of a build in GET /api/builds (letters, digits, '-' and '_')"
    if places <= {"query"}:
        return "see the parameters of this route in /docs (the OpenAPI spec is /openapi.json)"
    return "see this route in /docs (the OpenAPI spec is /openapi.json)"


def _id_path() -> Any:
    from fastapi import Path as PathParam

    return PathParam(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")


def _no_build(build_id: str) -> WheelyardError:
    return BuildNotFound(build_id)


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")
