"""The API's view of the service itself: its health, the live workers, and the dashboard page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis
import requests
from fastapi import APIRouter
from fastapi.responses import HTMLResponse, JSONResponse

from server.api_models import Health, WorkerList
from server.api_state import SharedParts

STATIC = Path(__file__).parent / "static"

router = APIRouter()


@router.get("/api/health", response_model=Health, responses={503: {"model": Health, "description": "not ready"}})
def health(shared: SharedParts) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        shared.client.ping()
        checks["redis"] = "ok"
    except redis.RedisError:
        checks["redis"] = "unavailable"
    try:
        r = requests.get(shared.settings.index_url.rstrip("/") + "/health", timeout=3)
        checks["index"] = "ok" if r.status_code == 200 else f"status {r.status_code}"
    except requests.RequestException:
        checks["index"] = "unavailable"
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ok" if ok else "degraded", "checks": checks}, status_code=200 if ok else 503)


@router.get("/api/workers", response_model=WorkerList)
def workers(shared: SharedParts) -> dict[str, Any]:
    return {"workers": shared.store.workers()}


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def dashboard() -> HTMLResponse:
    page = STATIC / "dashboard.html"
    if page.exists():
        return HTMLResponse(page.read_text())
    return HTMLResponse("<h1>wheelyard</h1><p>See <a href='/docs'>/docs</a>.</p>")
