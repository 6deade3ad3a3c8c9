"""The API's errors, rendered in one place (``render_error``): every refusal is a class of the
error catalogue (builder/errors/) with its stable ``error`` reference, a ``message`` that says
what was wrong and a ``hint`` that says how to fix it. No traceback ever reaches a client.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping

import kombu.exceptions
import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from builder.errors import (
    HttpError,
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    RedisUnavailable,
    RequestTooLarge,
    Unauthorized,
    WheelyardError,
)

logger = logging.getLogger("server.api")

# A build request is a few hundred bytes; anything much larger is refused before it is read whole.
MAX_BODY_BYTES = 64 * 1024


def render_error(
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
            response = render_error(RequestTooLarge(self.limit))
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


def install_error_handlers(app: FastAPI) -> None:
    """Every error an app's routes raise, and Starlette's and FastAPI's own, answered as the catalogue's."""

    @app.exception_handler(WheelyardError)
    async def wheelyard_error(request: Request, exc: WheelyardError) -> JSONResponse:
        return render_error(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return render_error(_invalid_request(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _http_refusal(app, request, exc)

    @app.exception_handler(redis.RedisError)
    @app.exception_handler(kombu.exceptions.OperationalError)  # sending to the queue failed
    async def redis_down(request: Request, exc: Exception) -> JSONResponse:
        logger.warning("redis unavailable: %s", exc.__class__.__name__)
        return render_error(
            RedisUnavailable(
                "the build queue (Redis) is not reachable; nothing was queued",
                "try again shortly; operators: check that Redis is running",
            ),
            503,
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s", request.url.path)
        return render_error(InternalError("wheelyard failed to answer this request", "see the API's log"))


def _invalid_request(exc: RequestValidationError) -> InvalidRequest:
    """What FastAPI's validation refused, said field by field."""
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
    return InvalidRequest("; ".join(problems)[:2000], _validation_hint(places))


def _http_refusal(app: FastAPI, request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Starlette's own refusals (no route, wrong method, a body too large), as the catalogue's errors."""
    if exc.status_code == 400:
        # FastAPI's only 400: a body it could not parse at all (e.g. JSON nested too deep to decode).
        return render_error(InvalidRequest(str(exc.detail), _JSON_HINT), 400)
    kind = _HTTP_ERRORS.get(exc.status_code, HttpError)
    error = kind.__new__(kind)
    WheelyardError.__init__(error, str(exc.detail))  # Starlette's words, the class's hint
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # Allow names every method of the path (RFC 9110), not only those of the first route matched.
        headers["Allow"] = ", ".join(sorted(_allowed_methods(app, request.scope)))
        error.hint = f"this path answers {headers['Allow']}"
    return render_error(error, exc.status_code, headers=headers or None)


def _allowed_methods(app: FastAPI, scope: Scope) -> set[str]:
    methods: set[str] = set()
    for route in _routes(app.router.routes):
        if route.methods and route.matches(scope)[0] != Match.NONE:
            methods |= route.methods
    return methods


def _routes(routes: Iterable[BaseRoute]) -> Iterator[Route]:
    """Every route of an app, those of the routers it includes too (FastAPI keeps an included
    router whole, as one entry; none here is included under a prefix)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _routes(included.routes)
        elif isinstance(route, Route):
            yield route


def _validation_hint(places: set[str]) -> str:
    """How to fix a request refused by validation, for the part of it that was wrong."""
    if places <= {"body"}:
        return _JSON_HINT
    if places <= {"path"}:
        return "a build id is the 'id' of a build in GET /api/builds (letters, digits, '-' and '_')"
    if places <= {"query"}:
        return "see the parameters of this route in /docs (the OpenAPI spec is /openapi.json)"
    return "see this route in /docs (the OpenAPI spec is /openapi.json)"
