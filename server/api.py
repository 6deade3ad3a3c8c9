"""The HTTP API: build requests, their status and logs, workers, health.

Errors are rendered in one place (``_render_error``): every refusal has a stable
``error`` reference, a ``message`` that says what was wrong and a ``hint`` that says how
to fix it. No traceback ever reaches a client.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import redis
import requests
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from builder.config import Settings
from builder.errors import WheelyardError
from builder.records import STATUSES, BuildStore, connect
from builder.tasks import BUILD_TASK, create_celery_app
from builder.upstream import SimpleIndex
from server.service import BuildService, present

logger = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"


class BuildRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requirement: str = Field(min_length=1, max_length=512, examples=["markupsafe==3.0.2"])
    targets: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=1, max_length=32, examples=[["cp312-manylinux_x86_64"]]
    )
    from_source: bool | None = Field(default=None, description="build from the sdist even where upstream has a wheel")
    retry: bool = Field(default=False, description="build again a target whose last build failed")


class ErrorBody(BaseModel):
    error: str
    message: str
    hint: str | None = None


def _render_error(status: int, reference: str, message: str, hint: str | None) -> JSONResponse:
    return JSONResponse({"error": reference, "message": message, "hint": hint}, status_code=status)


def create_app(
    settings: Settings,
    redis_url: str,
    send: Callable[[str, str], None] | None = None,
) -> FastAPI:
    app = FastAPI(
        title="wheelyard",
        version="0.1.0",
        description="Builds the wheels pip cannot find, diagnoses failed builds, publishes to a private index.",
        responses={422: {"model": ErrorBody}, 503: {"model": ErrorBody}},
    )
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
    )

    # -- errors, in one place ----------------------------------------------------------------
    @app.exception_handler(WheelyardError)
    async def wheelyard_error(request: Request, exc: WheelyardError) -> JSONResponse:
        status = exc.status_code if 400 <= exc.status_code < 600 else 400
        return _render_error(status, exc.reference, exc.message, exc.hint)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            problems.append(f"{where}: {err.get('msg', 'invalid')}")
        return _render_error(
            422,
            "invalid-request",
            "; ".join(problems)[:2000],
            'send JSON like {"requirement": "markupsafe==3.0.2", "targets": ["cp312-manylinux_x86_64"]}',
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        reference = {404: "not-found", 405: "method-not-allowed", 401: "unauthorized"}.get(
            exc.status_code, "http-error"
        )
        return _render_error(exc.status_code, reference, str(exc.detail), None)

    @app.exception_handler(redis.RedisError)
    async def redis_down(request: Request, exc: redis.RedisError) -> JSONResponse:
        logger.warning("redis unavailable: %s", exc.__class__.__name__)
        return _render_error(
            503,
            "redis-unavailable",
            "the build queue (Redis) is not reachable; nothing was queued",
            "try again shortly; operators: check that Redis is running",
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s", request.url.path)
        return _render_error(500, "internal-error", "wheelyard failed to answer this request", "see the API's log")

    # -- auth ------------------------------------------------------------------------------
    def require_token(authorization: Annotated[str | None, Header()] = None) -> None:
        if not settings.api_token:
            return
        expected = f"Bearer {settings.api_token}"
        if authorization is None or not hmac.compare_digest(authorization.encode(), expected.encode()):
            raise WheelyardError(
                "this API needs a token to accept build requests",
                "send 'Authorization: Bearer <token>' (wheelyard request reads WHEELYARD_API_TOKEN)",
                reference="unauthorized",
            ).with_status(401)

    # -- routes ----------------------------------------------------------------------------
    @app.get("/api/health", responses={200: {"description": "ready"}})
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

    @app.post("/api/builds", status_code=202, dependencies=[Depends(require_token)])
    def create_builds(body: BuildRequest, request: Request) -> dict[str, Any]:
        submissions = service.submit(body.requirement, body.targets, from_source=body.from_source, retry=body.retry)
        served = store.served_queues()
        return {"builds": [present(s.record, served, _base(request)) | {"created": s.created} for s in submissions]}

    @app.get("/api/builds")
    def list_builds(
        request: Request,
        name: Annotated[str | None, Query(max_length=200)] = None,
        status: Annotated[str | None, Query(max_length=32)] = None,
        target: Annotated[str | None, Query(max_length=64)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> dict[str, Any]:
        if status is not None and status not in STATUSES:
            raise WheelyardError(
                f"unknown status {status!r}",
                f"one of: {', '.join(STATUSES)}",
                reference="invalid-filter",
            )
        served = store.served_queues()
        out = []
        from packaging.utils import canonicalize_name

        wanted = canonicalize_name(name) if name else None
        for record in store.records(limit=2000):
            view = present(record, served, _base(request))
            if wanted and record.name != wanted:
                continue
            if status and view["status"] != status:
                continue
            if target and record.target != target:
                continue
            out.append(view)
            if len(out) >= limit:
                break
        return {"builds": out, "total": store.count()}

    @app.get("/api/builds/{build_id}")
    def get_build(build_id: Annotated[str, _id_path()], request: Request) -> dict[str, Any]:
        record = store.get(build_id)
        if record is None:
            raise _no_build(build_id)
        return present(record, store.served_queues(), _base(request))

    @app.get("/api/builds/{build_id}/log", response_class=PlainTextResponse)
    def get_log(build_id: Annotated[str, _id_path()], offset: Annotated[int, Query(ge=0)] = 0) -> Response:
        if store.get(build_id) is None:
            raise _no_build(build_id)
        data = store.read_log(build_id, offset)
        return Response(
            data,
            media_type="text/plain; charset=utf-8",
            headers={"X-Log-Offset": str(offset + len(data))},
        )

    @app.get("/api/workers")
    def workers() -> dict[str, Any]:
        return {"workers": store.workers()}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def dashboard() -> HTMLResponse:
        page = STATIC / "dashboard.html"
        if page.exists():
            return HTMLResponse(page.read_text())
        return HTMLResponse("<h1>wheelyard</h1><p>See <a href='/docs'>/docs</a>.</p>")

    return app


def _id_path() -> Any:
    from fastapi import Path as PathParam

    return PathParam(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")


def _no_build(build_id: str) -> WheelyardError:
    return WheelyardError(
        f"there is no build {build_id!r}",
        "list builds with GET /api/builds",
        reference="build-not-found",
    ).with_status(404)


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")
