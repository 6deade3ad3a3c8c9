"""PEP 691 content negotiation: which form of a Simple API page a client's ``Accept`` asks for.

The forms are ``json`` (``application/vnd.pypi.simple.v1+json``), ``vhtml``
(``application/vnd.pypi.simple.v1+html``) and ``html`` (``text/html``, PEP 503's). The
``latest`` aliases of the vnd types name v1. Each form gets the q-value of the most specific
media range that matches it (RFC 9110); the highest non-zero q wins. Between equal q-values a
form named outright beats one a wildcard reached, and then JSON is preferred among named
forms, ``text/html`` among wildcards (so ``*/*``, what generic HTTP clients send, gets the
page every client reads). No ``Accept`` (or an empty one) means ``text/html``, as PEP 691
says for clients that predate it; a header no form matches is ``None``: the server answers 406.
"""

from __future__ import annotations

import functools

JSON, VHTML, HTML = "json", "vhtml", "html"
CONTENT_TYPES = {
    JSON: "application/vnd.pypi.simple.v1+json",
    VHTML: "application/vnd.pypi.simple.v1+html",
    HTML: "text/html; charset=utf-8",
}
# Media range -> the forms it matches, and how specific it is.
_RANGES: dict[str, tuple[tuple[str, ...], int]] = {
    "application/vnd.pypi.simple.v1+json": ((JSON,), 2),
    "application/vnd.pypi.simple.latest+json": ((JSON,), 2),
    "application/vnd.pypi.simple.v1+html": ((VHTML,), 2),
    "application/vnd.pypi.simple.latest+html": ((VHTML,), 2),
    "text/html": ((HTML,), 2),
    "text/*": ((HTML,), 1),
    "application/*": ((JSON, VHTML), 1),
    "*/*": ((JSON, VHTML, HTML), 0),
}
_NAMED_PREFERENCE = {JSON: 2, VHTML: 1, HTML: 0}
_WILDCARD_PREFERENCE = {HTML: 2, VHTML: 1, JSON: 0}


def _q(params: list[str]) -> float | None:
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            try:
                q = float(value.strip())
            except ValueError:
                return None
            return q if 0.0 <= q <= 1.0 else None
    return 1.0


@functools.lru_cache(maxsize=512)
def choose(accept: str | None) -> str | None:
    """The form to answer ``accept`` with, or None for 406."""
    if accept is None or not accept.strip():
        return HTML
    best: dict[str, tuple[int, float]] = {}
    for item in accept.split(","):
        media, *params = item.split(";")
        match = _RANGES.get(media.strip().lower())
        q = _q(params)
        if match is None or q is None:
            continue
        forms, specificity = match
        for form in forms:
            if form not in best or specificity > best[form][0]:
                best[form] = (specificity, q)
    ranked = [
        (q, specificity == 2, (_NAMED_PREFERENCE if specificity == 2 else _WILDCARD_PREFERENCE)[form], form)
        for form, (specificity, q) in best.items()
        if q > 0
    ]
    if not ranked:
        return None
    return max(ranked)[3]
