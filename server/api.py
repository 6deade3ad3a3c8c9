"""The HTTP API: one FastAPI app made of routers by area.

- ``server.api_builds``: build requests, their listing and counts, each build and its log;
- ``server.api_status``: health, live workers, the dashboard page;
- ``server.index_api``, ``server.ensure.api``, ``server.misses.routes``, ``server.watch.routes``:
  the index, ``ensure``, demand and watch lists;
- ``server.api_errors``: every error answered in one place, as the error catalogue's;
- ``server.api_models``: the request and answer bodies of the spec.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, FastAPI

from builder.config import Settings
from builder.records import BuildStore, connect
from builder.tasks import BUILD_TASK, create_celery_app
from builder.upstream import SimpleIndex
from server.api_builds import router as builds_router
from server.api_errors import MAX_BODY_BYTES, BodyLimit, install_error_handlers
from server.api_models import error_responses
from server.api_state import Shared, require_token
from server.api_status import router as status_router
from server.ensure.api import ENSURE_MAX_BODY_BYTES, ensure_router
from server.ensure.holdings import private_check
from server.index.api import index_router
from server.misses.routes import create_demand_router
from server.service import BuildService
from server.watch.routes import watch_router


def create_app(
    settings: Settings,
    redis_url: str,
    send: Callable[[str, str], None] | None = None,
) -> FastAPI:
    app = FastAPI(
        title="wheelyard",
        version="0.1.0",
        description="Builds the wheels pip cannot find, diagnoses failed builds, publishes to a private index.",
        responses=error_responses(422, 503),
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

    app.include_router(create_demand_router(settings, service, require_token=require_token))
    app.include_router(watch_router(client))

    install_error_handlers(app)
    app.state.shared = Shared(settings, client, store, service)
    app.include_router(index_router(settings, require_token), responses=error_responses(400, 401, 404, 413))
    app.include_router(status_router)
    app.include_router(builds_router)

    ensure_errors = error_responses(400, 401, 404, 413, 502)
    app.include_router(ensure_router(settings, service), dependencies=[Depends(require_token)], responses=ensure_errors)
    return app
