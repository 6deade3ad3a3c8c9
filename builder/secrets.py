"""The worker's secrets: which variables a build must not see, and which values must never be
stored in a build log or shown in a response.

A build's environment is made from scratch (``builder.sandbox.build_environment``) and
drops anything ``is_secret_variable`` marks. What the worker's own tools print, and what a
build prints, still goes through a :class:`Redactor` made from ``secret_values`` before
it reaches the log file or the build record: a build that finds a way to print a secret
(an option read as a config file, a tool that echoes its command line) stores ``***``.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from builder.config import SECRET_FIELDS, Settings

__all__ = ["MIN_SECRET_LENGTH", "Redactor", "is_secret_variable", "secret_paths", "secret_values"]

_SECRET_NAME = re.compile(r"TOKEN|PASSWORD|PASSWD|SECRET|KEY|CREDENTIAL|AUTH|COOKIE|SESSION|PRIVATE", re.IGNORECASE)
# The worker's own settings, its broker, and package-index clients (index credentials).
_SECRET_PREFIXES = (
    "WHEELYARD_",
    "REDIS",
    "CELERY_",
    "PIP_",
    "UV_",
    "TWINE_",
    "AWS_",
    "GH_",
    "GITHUB_",
)
_URL_WITH_USERINFO = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s@]+@", re.IGNORECASE)


def is_secret_variable(name: str, value: str = "") -> bool:
    """Whether a variable must not reach a build: by its name, or a URL with credentials."""
    upper = name.upper()
    if upper.startswith(_SECRET_PREFIXES) or _SECRET_NAME.search(upper):
        return True
    return bool(_URL_WITH_USERINFO.search(value))


# Shorter values are not redacted: "1" or "true" would take every digit out of a log.
MIN_SECRET_LENGTH = 4


def secret_values(
    settings: Settings | None = None,
    environ: Mapping[str, str] | None = None,
    extra: Sequence[str | None] = (),
) -> list[str]:
    """The values that must never appear in a build log or a response: the worker's secret
    settings (upload password, API token, read password), every password in a URL it uses
    (Redis, upstream, index), the values of its variables named like a secret (``*TOKEN*``,
    ``*PASSWORD*``, ...; a prefix such as ``WHEELYARD_`` alone only keeps a variable from a
    build: its value, a port or a path, is no secret), and ``extra``."""
    found: set[str] = {v for v in extra if v}
    urls: list[str] = []
    if settings is not None:
        found.update(v for name in SECRET_FIELDS if isinstance(v := getattr(settings, name), str))
        urls += [u for u in (settings.redis_url, settings.upstream_index, settings.index_url) if u]
    for name, value in (environ if environ is not None else os.environ).items():
        if _SECRET_NAME.search(name):
            found.add(value)
        urls.append(value)
    for url in urls:
        if _URL_WITH_USERINFO.search(url):
            with contextlib.suppress(ValueError):
                password = urlsplit(url.strip()).password
                if password:
                    found.update({password, unquote(password)})
    found |= {quote(v, safe="") for v in found}
    return sorted((v for v in found if len(v) >= MIN_SECRET_LENGTH), key=len, reverse=True)


class Redactor:
    """Replaces secret values in a stream of output with ``***`` before it is stored.

    A secret may arrive split across two chunks: the end of a chunk that could be the start
    of one is held back until the next chunk (or ``flush``) decides."""

    MASK = b"***"

    def __init__(self, secrets: Sequence[str]) -> None:
        encoded = sorted({v.encode() for v in secrets if len(v) >= MIN_SECRET_LENGTH}, key=len, reverse=True)
        self._secrets = encoded
        self._pattern = re.compile(b"|".join(re.escape(v) for v in encoded)) if encoded else None
        self._held = b""

    def feed(self, data: bytes) -> bytes:
        if self._pattern is None:
            return data
        data = self._pattern.sub(self.MASK, self._held + data)
        keep = 0
        for k in range(min(len(data), len(self._secrets[0]) - 1), 0, -1):
            tail = data[-k:]
            if any(v.startswith(tail) for v in self._secrets):
                keep = k
                break
        self._held = data[len(data) - keep :]
        return data[: len(data) - keep]

    def flush(self) -> bytes:
        held, self._held = self._held, b""
        return held

    def text(self, value: str) -> str:
        """A whole message (an error, a hint) without secrets."""
        if self._pattern is None:
            return value
        return self._pattern.sub(self.MASK, value.encode()).decode(errors="replace")


def secret_paths(environ: Mapping[str, str] | None = None) -> list[Path]:
    """Files the worker reads its settings and secrets from (``WHEELYARD_CONFIG``, and every
    ``*_FILE`` variable named like a secret): hidden from every sandbox, wherever they are."""
    out: list[Path] = []
    for name, value in (environ if environ is not None else os.environ).items():
        named = name == "WHEELYARD_CONFIG" or (name.endswith("_FILE") and _SECRET_NAME.search(name))
        if named and value and os.path.isabs(value):
            out.append(Path(value))
    return out
