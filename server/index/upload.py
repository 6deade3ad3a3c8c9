"""wheelyard's upload endpoint: pypiserver, made atomic, immutable and authenticated.

Clients read the index from static files (``site.py`` writes them at publish time; nginx or
``embedded.py`` serves them, ``serve.py`` starts the lot). The storage is ``storage.py``'s,
the credentials ``credentials.py``'s.
The upload endpoint is pypiserver's own application with a storage backend of ours:

* An upload is written to a hidden staging directory next to the wheels (its name
  starts with a dot, so pypiserver never lists it), fsynced, verified, and then
  published with ``os.link``. Linking fails if the name exists, so of two concurrent
  uploads of one filename exactly one wins; nobody ever sees a partial file, and a
  published filename is never replaced or removed.
* A filename must be a wheel or an sdist name, with no path in it; a wheel must pass
  ``verify_wheel`` (a RECORD mismatch is refused with 400) and an sdist ``verify_sdist``
  (an archive of that name and version) before it becomes visible. Once linked, its
  project's static pages are rewritten before the upload is answered: a 200 means the
  pages list the file.
* Uploads need the upload credentials (an htpasswd file generated in the data
  directory). Reading is open unless a read password is set; then listing and
  downloading need the read password (any user name) or the upload credentials.
* The simple index (``/simple/``) gives a sha256 for every file, so pip checks hashes;
  ``/health`` answers ``Ok``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import waitress
from pypiserver import app_from_config, setup_routes_from_config
from pypiserver.backend import BackendProxy
from pypiserver.bottle_wrapper import Bottle, HTTPError, request, response
from pypiserver.config import Config

from builder.config import Settings
from builder.errors import AlreadyPublished, InvalidUpload, RemovalRefused, SdistRejected, WheelRejected, WheelyardError
from server.index import negotiate
from server.index.credentials import ensure_upload_credentials, make_auther
from server.index.site import IndexSite
from server.index.storage import ImmutableFileBackend, remove_stale_staging

log = logging.getLogger(__name__)

# Statuses for the errors the backend raises (WheelRejected is a 400 to uploaders).
_STATUS: dict[type[WheelyardError], int] = {
    AlreadyPublished: 409,
    WheelRejected: 400,
    SdistRejected: 400,
    InvalidUpload: 400,
    RemovalRefused: 405,
}


def _status_for(exc: WheelyardError) -> int:
    for kind, status in _STATUS.items():
        if isinstance(exc, kind):
            if kind is AlreadyPublished and "twine" in request.headers.get("User-Agent", ""):
                return 400  # twine recognises "already exists" as a 400, as pypi.org sends it
            return status
    return 500


def _wheelyard_errors(callback: Callable[..., Any]) -> Callable[..., Any]:
    """Bottle plugin: a WheelyardError raised by a route becomes an HTTP error with its text."""

    @functools.wraps(callback)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return callback(*args, **kwargs)
        except WheelyardError as exc:
            raise HTTPError(_status_for(exc), str(exc)) from None

    return wrapper


def _plain_text_error(error: Any) -> str:
    response.content_type = "text/plain; charset=utf-8"
    body = error.body if isinstance(error.body, str) and error.body else error.status_line
    return f"{body}\n"


def create_index_app(settings: Settings) -> Bottle:
    """pypiserver's app serving ``settings.wheel_dir`` with wheelyard's storage and auth."""
    wheel_dir = settings.wheel_dir
    wheel_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(wheel_dir)
    ensure_upload_credentials(settings)
    htpasswd = settings.data_dir / "htpasswd"
    read_password = settings.index_read_password or None
    config = Config.default_with_overrides(
        roots=[wheel_dir.resolve()],
        host=settings.index_host,
        port=settings.index_port,
        authenticate=["update"] if read_password is None else ["download", "list", "update"],
        password_file=str(htpasswd),
        auther=make_auther(htpasswd, read_password),
        hash_algo="sha256",
        disable_fallback=True,
        overwrite=False,
    )
    config.backend = BackendProxy(ImmutableFileBackend(config, IndexSite(settings.data_dir)))
    app = setup_routes_from_config(app_from_config(config), config)
    app.install(_wheelyard_errors)
    app.default_error_handler = _plain_text_error
    return app


# A connection that sends nothing for this long is closed, so slow clients cannot hold the
# endpoint's connections (the static server in front of it times out slow headers itself).
UPLOAD_IDLE_SECONDS = 60
UPLOAD_CONNECTION_LIMIT = 512


def negotiating(app: Callable[..., Any]) -> Callable[..., Any]:
    """``app`` that also answers nginx's ``/_negotiate/simple/...`` (an Accept header nginx's map
    does not list): 406, or the page to serve, as an ``X-Accel-Redirect`` into ``/_form/``."""

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = str(environ.get("PATH_INFO", ""))
        if not path.startswith("/_negotiate/simple/") or not path.endswith("/") or ".." in path:
            return app(environ, start_response)
        form = negotiate.choose(environ.get("HTTP_ACCEPT"))
        if form is None:
            start_response("406 Not Acceptable", [("Content-Type", "text/plain"), ("Vary", "Accept")])
            return [b"this index serves application/vnd.pypi.simple.v1+json, +html and text/html\n"]
        page = path[len("/_negotiate") :] + f"index.{form}"
        start_response("200 OK", [("X-Accel-Redirect", "/_form" + page), ("Content-Length", "0")])
        return [b""]

    return wrapped


def serve_upload_endpoint(settings: Settings, host: str, port: int, *, threads: int = 8) -> None:
    """Serve the upload endpoint on ``host:port`` until interrupted (waitress)."""
    waitress.serve(
        negotiating(create_index_app(settings)),
        host=host,
        port=port,
        threads=threads,
        channel_timeout=UPLOAD_IDLE_SECONDS,
        connection_limit=UPLOAD_CONNECTION_LIMIT,
        cleanup_interval=5,
        ident="wheelyard-index",
    )
