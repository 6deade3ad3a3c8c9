"""Upload wheels to the private index, and ask it what it has.

``publish_wheel`` speaks the upload protocol twine speaks (a multipart POST to the
index root with ``:action=file_upload``), so it works with pypiserver and with any
index that accepts twine. The index never replaces a file: an upload of a filename it
has already is ``AlreadyPublished``. Given the sha256 the wheel was verified with, it
uploads only a file that still has it, and then checks that the index lists exactly that
hash for the filename (``wheel-changed``, ``index-hash-mismatch`` otherwise). Passwords
are sent as HTTP basic auth only; they appear in no message, log line or exception.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import requests
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from builder.errors import (
    AlreadyPublished,
    IndexAuthenticationFailed,
    IndexHashMismatch,
    IndexUnavailable,
    PublishFailed,
    WheelChanged,
    WheelyardError,
)
from builder.upstream import SimpleIndex
from builder.verify import verify_wheel

_TIMEOUT = (10.0, 300.0)
_ALREADY_EXISTS = re.compile(r"already exists|file exists|already been (uploaded|published)", re.I)


@dataclass(frozen=True)
class PublishResult:
    filename: str
    name: str
    version: str
    sha256: str
    size: int
    index_url: str


def publish_wheel(
    path: Path,
    *,
    index_url: str,
    user: str,
    password: str | None,
    session: requests.Session | None = None,
    sha256: str | None = None,
) -> PublishResult:
    """Upload the wheel at ``path`` to the index at ``index_url`` (its root, not /simple/).

    With ``sha256`` (the hash the wheel was verified with), a file that no longer has it is
    not uploaded, and the upload counts only once the index lists that very hash."""
    info = verify_wheel(path)
    if sha256 is not None and info.sha256 != sha256.lower():
        raise WheelChanged(info.filename, info.sha256, sha256)
    python_tags = sorted({tag.interpreter for tag in info.tags})
    form = {
        ":action": "file_upload",
        "protocol_version": "1",
        "metadata_version": "2.1",
        "name": info.name,
        "version": info.version,
        "filetype": "bdist_wheel",
        "pyversion": ".".join(python_tags),
        "sha256_digest": info.sha256,
    }
    upload_url = _index_root(index_url)
    shown = redact_url(upload_url)
    auth = (user, password) if password is not None else None
    response = _upload(path, info.filename, upload_url, form, auth, session)
    if 200 <= response.status_code < 300:
        if sha256 is not None:
            _check_listed(info.filename, info.sha256, index_url, user, password, session)
        return PublishResult(
            filename=info.filename,
            name=info.name,
            version=info.version,
            sha256=info.sha256,
            size=info.size,
            index_url=shown,
        )
    raise _refusal(response, info.filename, shown, user, sent_credentials=auth is not None)


def _upload(
    path: Path,
    filename: str,
    upload_url: str,
    form: dict[str, str],
    auth: tuple[str, str] | None,
    session: requests.Session | None,
) -> requests.Response:
    """POST the file to the index's upload endpoint, as twine does; IndexUnavailable when it does not answer."""
    http = session or requests.Session()
    try:
        with path.open("rb") as fh:
            return http.post(
                upload_url,
                data=form,
                files={"content": (filename, fh, "application/octet-stream")},
                auth=auth,
                timeout=_TIMEOUT,
                allow_redirects=False,
            )
    except requests.RequestException as exc:
        raise IndexUnavailable(
            f"cannot upload {filename} to {redact_url(upload_url)}: {type(exc).__name__}",
            "check that the index is running and that index_url points at it",
        ) from None
    finally:
        if session is None:
            http.close()


def _refusal(
    response: requests.Response, filename: str, shown: str, user: str, *, sent_credentials: bool
) -> WheelyardError:
    """Why the index did not take an upload, as the error that says so."""
    status = response.status_code
    body = _first_line(response.text)
    if status == 409 or (status == 400 and _ALREADY_EXISTS.search(response.text)):
        return AlreadyPublished(
            f"{filename} is on {shown} already",
            "files on the index are never replaced; publish a new version instead",
        )
    if status in (401, 403):
        return IndexAuthenticationFailed(
            f"{shown} refused the upload of {filename}: HTTP {status}"
            + (" (no credentials were sent)" if not sent_credentials else ""),
            f"check the index user ({user!r}) and password: WHEELYARD_INDEX_USER, "
            "WHEELYARD_INDEX_PASSWORD (or WHEELYARD_INDEX_PASSWORD_FILE)",
        )
    if status in (301, 302, 303, 307, 308):
        return PublishFailed(
            f"{shown} redirected the upload of {filename} (HTTP {status})",
            "index_url must be the index root that accepts uploads, not its /simple/ page",
        )
    return PublishFailed(f"{shown} refused {filename}: HTTP {status}" + (f": {body}" if body else ""))


def publish_verified(
    path: Path, sha256: str, *, index_url: str, user: str, password: str | None, say: Callable[[str], None]
) -> str:
    """Upload the verified file, which must still have the verified ``sha256``; the index must
    then list exactly that hash (publish_wheel checks both). The hash the index holds is returned:
    a file already there is kept as it is (``say`` tells the build log)."""
    try:
        publish_wheel(path, index_url=index_url, user=user, password=password, sha256=sha256)
    except AlreadyPublished:
        # A redelivered job (its first worker died after uploading) finds its wheel there:
        # the index keeps the first file, and that is the one this build points at, with
        # the index's hash (a rebuilt wheel need not be byte-identical).
        say(f"wheelyard: {path.name} is on the index already; it is kept as it is")
        on_index = published_sha256(path.name, index_url=index_url, user=user, password=password)
        sha256 = on_index or sha256
    say(f"wheelyard: published {path.name} sha256={sha256}")
    return sha256


def _check_listed(
    filename: str,
    sha256: str,
    index_url: str,
    user: str,
    password: str | None,
    session: requests.Session | None,
) -> None:
    """The index took the upload: it must now list ``filename`` with exactly ``sha256``."""
    try:
        listed = published_sha256(filename, index_url=index_url, user=user, password=password, session=session)
    except LookupError:
        listed = "nothing"
    if listed != sha256:
        raise IndexHashMismatch(redact_url(index_url), filename, listed, sha256)


def wheel_on_index(
    filename: str,
    *,
    index_url: str,
    user: str | None = None,
    password: str | None = None,
    session: requests.Session | None = None,
) -> bool:
    """Whether the index's simple page for the project lists ``filename``."""
    return filename in _simple_links(filename, index_url, user, password, session)


def published_sha256(
    filename: str,
    *,
    index_url: str,
    user: str | None = None,
    password: str | None = None,
    session: requests.Session | None = None,
) -> str | None:
    """The sha256 the index gives for ``filename`` (None if it lists the file without one).

    Raises ``LookupError`` if the index does not list the file.
    """
    links = _simple_links(filename, index_url, user, password, session)
    if filename not in links:
        raise LookupError(f"{filename} is not on {redact_url(index_url)}")
    return links[filename]


def redact_url(url: str) -> str:
    """``url`` without any password in it, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else "***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


def _index_root(index_url: str) -> str:
    url = index_url.rstrip("/")
    if url.endswith("/simple"):
        url = url[: -len("/simple")]
    return url + "/"


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:300]
    return ""


def _simple_links(
    filename: str,
    index_url: str,
    user: str | None,
    password: str | None,
    session: requests.Session | None,
) -> dict[str, str | None]:
    """Filenames on the project's simple page, each with its sha256 if the link carries one."""
    try:
        project = parse_wheel_filename(filename)[0]
    except InvalidWheelFilename:
        project = canonicalize_name(re.split(r"-\d", filename, maxsplit=1)[0])
    page = _index_root(index_url) + f"simple/{project}/"
    shown = redact_url(page)
    auth = (user, password) if user is not None and password is not None else None
    http = session or requests.Session()
    try:
        response = http.get(page, auth=auth, timeout=_TIMEOUT)
    except requests.RequestException as exc:
        raise IndexUnavailable(f"cannot read {shown}: {type(exc).__name__}") from None
    finally:
        if session is None:
            http.close()
    if response.status_code == 404:
        return {}
    if response.status_code in (401, 403):
        raise IndexAuthenticationFailed(
            f"{shown} refused to list files: HTTP {response.status_code}",
            "the index needs a read password: pass user and password",
        )
    if response.status_code != 200:
        raise IndexUnavailable(f"{shown} answered HTTP {response.status_code}")
    return {f.filename: f.sha256.lower() if f.sha256 else None for f in SimpleIndex.files_from_page(response)}
