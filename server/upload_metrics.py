"""Upload outcomes of the index, counted at its upload endpoint (``wheelyard_index_uploads_total``).

Every upload is a POST to the endpoint's root (pypiserver's ``file_upload``); what it answered
says the outcome: 200 published, 409 the file exists already (an index never replaces one),
400 rejected (not a valid wheel or sdist, or a filename the index refuses), 401/403
unauthorized, 5xx error (what the "index errors" alert watches).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from builder.metrics import metrics

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def upload_outcome(status: int) -> str:
    if 200 <= status < 300:
        return "published"
    if status == 409:
        return "exists"
    if status in (400, 413, 422):
        return "rejected"
    if status in (401, 403):
        return "unauthorized"
    if status >= 500:
        return "error"
    return "refused"


def counting_uploads(app: WsgiApp) -> WsgiApp:
    """``app``, with the outcome of each upload (a POST to the root) counted."""

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO", "/") not in ("", "/"):
            return app(environ, start_response)

        def counted(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            code = int(status.split(" ", 1)[0]) if status[:3].isdigit() else 500
            metrics().uploads.labels(upload_outcome(code)).inc()
            return (
                start_response(status, headers, exc_info) if exc_info is not None else start_response(status, headers)
            )

        return app(environ, counted)

    return wrapped
