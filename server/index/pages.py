"""The Simple Repository API pages, rendered from what the index holds: pure functions, no I/O.

One project page lists every file of a project with what clients use to pick one without
downloading it: the sha256 (PEP 503), ``requires-python`` from the wheel's METADATA, the
metadata file's own sha256 (PEP 658/714), the file's size and upload time and the project's
versions (PEP 700), and the yank state (PEP 592). Each page exists as HTML (PEP 503, with
PEP 629's version meta tag) and as JSON (PEP 691); the two carry the same data.

File links are relative (``../../packages/FILE``), so the tree can be served under any prefix.
"""

from __future__ import annotations

import functools
import html
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

# PEP 700's additions (versions, size, upload-time) are version 1.1 of the API.
API_VERSION = "1.1"
# Bump when what a page says or how changes: every page is then written again at the next start.
PAGE_FORMAT = 1
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPE = "application/vnd.pypi.simple.v1+html"


@dataclass(frozen=True)
class FileEntry:
    """One file of a project as its pages show it."""

    filename: str
    sha256: str
    size: int
    upload_time: str  # ISO 8601 UTC, e.g. 2026-12-01T09:30:00.123456Z
    requires_python: str | None = None
    metadata_sha256: str | None = None  # wheels: the sha256 of FILE.metadata
    yanked: str | None = None  # None: not yanked; a reason (may be empty): yanked

    def to_dict(self) -> dict[str, object]:
        return dict(vars(self))  # every field is a str, an int or None: asdict's deep copy is not needed

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> FileEntry:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)  # type: ignore[arg-type]


# A publish sorts every file of its project again: the parse of each name (and its version) is
# kept, as names never change meaning. Bounded: a name is a few hundred bytes with its parse.
_PARSED_NAMES = 1 << 16


@functools.lru_cache(maxsize=_PARSED_NAMES)
def project_and_version(filename: str) -> tuple[str, str]:
    """The normalised project name and the version a wheel or sdist filename names."""
    try:
        if filename.endswith(".whl"):
            name, version, _, _ = parse_wheel_filename(filename)
        else:
            name, version = parse_sdist_filename(filename)
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion) as exc:
        raise ValueError(f"{filename!r} is not a wheel or sdist filename: {exc}") from None
    return str(name), str(version)


def sorted_entries(entries: Iterable[FileEntry]) -> list[FileEntry]:
    """Files in a stable order: by version, then filename (what a client shows first does not matter)."""

    def key(entry: FileEntry) -> tuple[Version, str]:
        return _version(project_and_version(entry.filename)[1]), entry.filename

    return sorted(entries, key=key)


@functools.lru_cache(maxsize=_PARSED_NAMES)
def _version(text: str) -> Version:
    return Version(text)


def versions_of(entries: Sequence[FileEntry]) -> list[str]:
    seen = {project_and_version(e.filename)[1] for e in entries}
    return sorted(seen, key=_version)


def _file_url(filename: str) -> str:
    return f"../../packages/{filename}"


def project_json(name: str, entries: Sequence[FileEntry]) -> bytes:
    """The PEP 691 JSON page of project ``name``."""
    files = []
    for e in entries:
        item: dict[str, object] = {
            "filename": e.filename,
            "url": _file_url(e.filename),
            "hashes": {"sha256": e.sha256},
            "size": e.size,
            "upload-time": e.upload_time,
        }
        if e.requires_python:
            item["requires-python"] = e.requires_python
        metadata: object = {"sha256": e.metadata_sha256} if e.metadata_sha256 else False
        item["core-metadata"] = metadata
        item["dist-info-metadata"] = metadata  # PEP 714: the old key, for clients before it
        item["yanked"] = (e.yanked or True) if e.yanked is not None else False
        files.append(item)
    page = {
        "meta": {"api-version": API_VERSION},
        "name": canonicalize_name(name),
        "versions": versions_of(entries),
        "files": files,
    }
    return json.dumps(page, separators=(",", ":")).encode()


def project_html(name: str, entries: Sequence[FileEntry]) -> bytes:
    """The PEP 503 HTML page of project ``name``, with PEP 592/629/658/714 attributes."""
    title = html.escape(canonicalize_name(name))
    lines = [
        "<!DOCTYPE html>",
        "<html>",
        "<head>",
        f'<meta name="pypi:repository-version" content="{API_VERSION}">',
        f"<title>Links for {title}</title>",
        "</head>",
        "<body>",
        f"<h1>Links for {title}</h1>",
    ]
    for e in entries:
        attrs = [f'href="{html.escape(_file_url(e.filename))}#sha256={e.sha256}"']
        if e.requires_python:
            attrs.append(f'data-requires-python="{html.escape(e.requires_python)}"')
        if e.metadata_sha256:
            value = f"sha256={e.metadata_sha256}"
            attrs.append(f'data-core-metadata="{value}"')
            attrs.append(f'data-dist-info-metadata="{value}"')
        if e.yanked is not None:
            attrs.append(f'data-yanked="{html.escape(e.yanked)}"')
        lines.append(f"<a {' '.join(attrs)}>{html.escape(e.filename)}</a><br>")
    lines += ["</body>", "</html>", ""]
    return "\n".join(lines).encode()


def _canonical_names(names: Iterable[str]) -> list[str]:
    return sorted({_canonical(n) for n in names})


# The root is written again for every new project: each name's normal form is kept.
_canonical = functools.lru_cache(maxsize=_PARSED_NAMES)(canonicalize_name)


def root_json(names: Iterable[str]) -> bytes:
    """The PEP 691 JSON root listing every project."""
    projects = [{"name": n} for n in _canonical_names(names)]
    return json.dumps({"meta": {"api-version": API_VERSION}, "projects": projects}, separators=(",", ":")).encode()


def root_html(names: Iterable[str]) -> bytes:
    """The PEP 503 HTML root listing every project."""
    lines = [
        "<!DOCTYPE html>",
        "<html>",
        "<head>",
        f'<meta name="pypi:repository-version" content="{API_VERSION}">',
        "<title>Simple index</title>",
        "</head>",
        "<body>",
    ]
    for n in _canonical_names(names):
        escaped = html.escape(n)
        lines.append(f'<a href="{escaped}/">{escaped}</a><br>')
    lines += ["</body>", "</html>", ""]
    return "\n".join(lines).encode()
