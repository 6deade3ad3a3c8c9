"""wheelyard's upload endpoint: pypiserver, made atomic, immutable and authenticated.

Clients read the index from static files (``server/site.py`` writes them at publish time;
nginx or ``server/index_http.py`` serves them, ``server/index_serve.py`` starts the lot).
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
import hashlib
import hmac
import logging
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import waitress
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    parse_sdist_filename,
    parse_wheel_filename,
)
from passlib.apache import HtpasswdFile
from pypiserver import app_from_config, setup_routes_from_config
from pypiserver.backend import BackendProxy, SimpleFileBackend
from pypiserver.bottle_wrapper import Bottle, HTTPError, request, response
from pypiserver.config import Config

from builder.config import Settings
from builder.errors import (
    AlreadyPublished,
    ConfigurationError,
    InvalidUpload,
    RemovalRefused,
    SdistRejected,
    WheelRejected,
    WheelyardError,
)
from builder.verify import verify_wheel
from server.sdist_check import verify_sdist
from server.site import IndexSite

log = logging.getLogger(__name__)

MAX_FILENAME_LENGTH = 200
STAGING_PREFIX = ".upload-"
# Staging directories older than this are left over from a crash and are removed at start.
STALE_STAGING_SECONDS = 24 * 3600
HTPASSWD_SCHEME = "sha512_crypt"
_CHUNK = 1 << 20
_FILENAME_CHARS = re.compile(r"^[A-Za-z0-9._+!-]+$")


# --- credentials -----------------------------------------------------------------------


def ensure_upload_credentials(settings: Settings) -> tuple[str, str]:
    """The upload user and password, with the index's htpasswd file written for them.

    The password is ``settings.index_password``; if none is configured, one is generated
    on first use and kept (mode 0600) in ``data_dir/index-password``.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    user = settings.index_user
    if not user or ":" in user:
        raise ConfigurationError(
            f"index user {user!r} cannot be used", "set WHEELYARD_INDEX_USER to a name without ':'"
        )
    password = settings.index_password or _stored_password(settings.data_dir / "index-password")
    _write_htpasswd(settings.data_dir / "htpasswd", user, password)
    return user, password


def _stored_password(path: Path) -> str:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        password = path.read_text().strip()
        if not password:
            raise ConfigurationError(f"{path} is empty", "delete it to generate a new upload password") from None
        return password
    password = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return password


def _write_htpasswd(path: Path, user: str, password: str) -> None:
    if path.exists():
        try:
            current = HtpasswdFile(str(path))
            if current.users() == [user] and current.check_password(user, password):
                return
        except ValueError:
            pass  # unreadable: written anew below
    htpasswd = HtpasswdFile(new=True, default_scheme=HTPASSWD_SCHEME)
    htpasswd.set_password(user, password)
    _atomic_write(path, htpasswd.to_string(), mode=0o600)


def _atomic_write(path: Path, data: bytes, *, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _make_auther(htpasswd_path: Path, read_password: str | None) -> Callable[[str, str], bool]:
    """pypiserver's credential check: upload credentials for everything, the read
    password (with any user name) for everything but uploads.

    The htpasswd file keeps the strong hash (sha512-crypt, ~0.2 s a check). Once a user's
    password has passed it, its sha256 is kept in memory and later requests are checked by a
    constant-time compare of that: uploads stay cheap, and a wrong password still meets the
    strong hash. A changed htpasswd file forgets what was kept."""
    htpasswd = HtpasswdFile(str(htpasswd_path))
    lock = threading.Lock()
    verified: dict[str, bytes] = {}

    def auther(user: str, password: str) -> bool:
        if (
            read_password is not None
            and not _is_update_request()
            and hmac.compare_digest(password.encode(), read_password.encode())
        ):
            return True
        digest = hashlib.sha256(password.encode()).digest()
        with lock:
            if htpasswd.load_if_changed():
                verified.clear()
            known = verified.get(user)
        if known is not None and hmac.compare_digest(digest, known):
            return True
        with lock:
            ok = bool(htpasswd.check_password(user, password))
            if ok:
                verified[user] = digest
        return ok

    return auther


def _is_update_request() -> bool:
    # pypiserver's "update" actions (file_upload, remove_pkg, ...) are POSTs to the root.
    return bool(request.method == "POST" and request.path in ("", "/"))


# --- storage ---------------------------------------------------------------------------


def validate_upload_filename(filename: str) -> None:
    """Refuse anything but a plain wheel or sdist filename."""
    if not filename:
        raise InvalidUpload("the upload has no filename")
    if len(filename) > MAX_FILENAME_LENGTH:
        raise InvalidUpload(f"the filename is {len(filename)} characters long; at most {MAX_FILENAME_LENGTH}")
    if "/" in filename or "\\" in filename or "\x00" in filename:
        raise InvalidUpload(f"the filename {filename!r} contains a path separator")
    if ".." in filename:
        raise InvalidUpload(f"the filename {filename!r} contains '..'")
    if filename.startswith("."):
        raise InvalidUpload(f"the filename {filename!r} starts with a dot")
    if not _FILENAME_CHARS.match(filename):
        raise InvalidUpload(f"the filename {filename!r} has characters other than letters, digits and ._+!-")
    try:
        if filename.endswith(".whl"):
            parse_wheel_filename(filename)
        else:
            parse_sdist_filename(filename)
    except InvalidWheelFilename as exc:
        raise InvalidUpload(f"{filename!r} is not a valid wheel filename: {exc}") from None
    except InvalidSdistFilename:
        raise InvalidUpload(
            f"{filename!r} is neither a wheel (.whl) nor an sdist (.tar.gz, .zip)",
            "the index accepts wheels and source distributions only",
        ) from None


class ImmutableFileBackend(SimpleFileBackend):  # type: ignore[misc]
    """pypiserver's directory backend, with atomic, verified, write-once uploads."""

    def __init__(self, config: Any, site: IndexSite | None = None) -> None:
        super().__init__(config)
        self.root: Path = self.roots[0]
        self.site = site

    def exists(self, filename: str) -> bool:
        validate_upload_filename(filename)
        return (self.root / filename).is_file()

    def add_package(self, filename: str, stream: BinaryIO) -> None:
        validate_upload_filename(filename)
        final = self.root / filename
        if final.exists():
            raise _already_published(filename)
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.root))
        offset = stream.tell()
        try:
            staged = staging / filename
            _write_synced(stream, staged)
            sha256 = None
            if filename.endswith(".whl"):
                sha256 = verify_wheel(staged).sha256
            else:
                verify_sdist(staged, filename)
            try:
                os.link(staged, final)
            except FileExistsError:
                raise _already_published(filename) from None
            _fsync_dir(self.root)
        finally:
            stream.seek(offset)
            shutil.rmtree(staging, ignore_errors=True)
        if self.site is not None:
            self.site.publish(filename, sha256=sha256)
        log.info("published %s", filename)

    def remove_package(self, pkg: Any) -> None:
        raise RemovalRefused(f"{pkg.relfn} cannot be removed: files on this index are never removed or replaced")


def _already_published(filename: str) -> AlreadyPublished:
    return AlreadyPublished(
        f"{filename} already exists on the index; published files are never replaced",
        "publish a new version (or a new build tag) instead",
    )


def _write_synced(stream: BinaryIO, path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as out:
        for chunk in iter(lambda: stream.read(_CHUNK), b""):
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_staging(root: Path, *, older_than: float = STALE_STAGING_SECONDS) -> None:
    """Remove staging directories a crashed upload left behind."""
    cutoff = time.time() - older_than
    for entry in root.glob(STAGING_PREFIX + "*"):
        try:
            if entry.is_dir() and entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry, ignore_errors=True)
        except FileNotFoundError:
            continue


# --- the application -------------------------------------------------------------------

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
        auther=_make_auther(htpasswd, read_password),
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
    from server import negotiate

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


def serve_index(settings: Settings) -> int:
    """The whole index: static pages in front, this endpoint behind (``server/index_serve.py``)."""
    from server.index_serve import serve

    return serve(settings)


if __name__ == "__main__":
    import sys

    from builder.config import load_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    loaded = load_settings()
    if sys.argv[1:] == ["--upload-endpoint"]:
        serve_upload_endpoint(loaded, loaded.index_upload_host, loaded.index_upload_port)
    else:
        raise SystemExit(serve_index(loaded))
