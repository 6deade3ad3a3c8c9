"""What a read of the site tree asks for, worked out once per request target and headers.

A ``GET``/``HEAD`` of ``/simple/...`` or ``/packages/...`` is answered from its target, its
``Accept`` and its ``Accept-Encoding`` alone (and the files): the name's normal form, the PEP 691
form, gzip or not. Clients send the same few combinations again and again, so the embedded
server keeps each one's ``Route`` (bounded) and a request costs a dictionary look-up and a
``stat`` of the file the route names, not a parse of its path and headers.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from packaging.utils import canonicalize_name

from server.index import negotiate

ROUTES_KEPT = 4096
_PAGE_TYPES = {k: v.encode() for k, v in negotiate.CONTENT_TYPES.items()}
_VARY = b"Vary: Accept, Accept-Encoding\r\n"
_NOT_ACCEPTABLE = (
    b"this index serves application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html and text/html\n"
)


@dataclass(frozen=True)
class Route:
    """The answer to a read: the first file of ``candidates`` that exists, else ``missing`` (404);
    or, where ``status`` is set, that answer whatever the files are."""

    candidates: tuple[tuple[str, bytes], ...] = ()  # (file under the site root, its extra headers)
    ctype: bytes = b""
    ranges: bool = False  # a file of packages/: Range requests are answered
    missing: bytes = b"no such file on this index\n"
    missing_extra: bytes = b""
    status: int = 0  # 301, 404 or 406
    text: bytes = b""
    extra: bytes = b""
    bodyless: bool = False  # no body even for a GET (a redirect)
    report: str | None = None  # a project page's path: reported to the API as demand


class Routes:
    """Each (target, Accept, Accept-Encoding) resolved once; forgotten all at once when full."""

    def __init__(self, kept: int = ROUTES_KEPT) -> None:
        self.kept = kept
        self.known: dict[tuple[bytes, bytes | None, bytes | None], Route] = {}

    def get(self, target: bytes, accept: bytes | None, encoding: bytes | None) -> Route:
        key = (target, accept, encoding)
        route = self.known.get(key)
        if route is None:
            if len(self.known) >= self.kept:
                self.known.clear()  # targets nobody asks twice (a scan) cannot grow it
            route = self.known[key] = resolve(target, accept, encoding)
        return route


def resolve(target: bytes, accept: bytes | None, encoding: bytes | None) -> Route:
    path = unquote(target.decode("latin-1").partition("?")[0])
    if path.startswith("/packages/"):
        name = path[len("/packages/") :]
        if not name or "/" in name or name.startswith("."):
            return Route(status=404, text=b"no such file on this index\n")
        return Route(candidates=(("packages/" + name, b""),), ctype=_file_type(name), ranges=True)
    rest = path[len("/simple/") :]
    report = None
    if rest:
        name, slash, tail = rest.partition("/")
        canonical = canonicalize_name(name)
        if tail or not name:
            return Route(status=404, text=b"no such page on this index\n")
        if canonical != name or not slash:
            location = b"Location: /simple/" + canonical.encode() + b"/\r\n"
            return Route(status=301, extra=location, bodyless=True)
        report = path
        base = f"simple/{name}/index."
    else:
        base = "simple/index."
    form = negotiate.choose(accept.decode("latin-1") if accept is not None else "")
    if form is None:
        return Route(status=406, text=_NOT_ACCEPTABLE, extra=_VARY, report=report)
    page = base + ("json" if form == negotiate.JSON else "html")
    plain = (page, _VARY)
    candidates = ((page + ".gz", _VARY + b"Content-Encoding: gzip\r\n"), plain) if _accepts_gzip(encoding) else (plain,)
    return Route(
        candidates=candidates,
        ctype=_PAGE_TYPES[form],
        missing=b"this index holds no such project\n",
        missing_extra=_VARY,
        report=report,
    )


def _accepts_gzip(value: bytes | None) -> bool:
    if not value or b"gzip" not in value:
        return False
    for item in value.split(b","):
        coding, _, params = item.partition(b";")
        if coding.strip() == b"gzip":
            return params.replace(b" ", b"") not in (b"q=0", b"q=0.0", b"q=0.00", b"q=0.000")
    return False


def _file_type(name: str) -> bytes:
    if name.endswith(".metadata"):
        return b"text/plain; charset=utf-8"
    if name.endswith(".zip") or name.endswith(".whl"):
        return b"application/zip"
    if name.endswith(".tar.gz"):
        return b"application/gzip"
    return b"application/octet-stream"
