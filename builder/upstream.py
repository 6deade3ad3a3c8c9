"""The upstream index, through the Simple API (PEP 691 JSON, PEP 503 HTML as a fallback).

Only the Simple API is used: it is what every mirror (devpi, Artifactory, a pypi.org
proxy) serves, while per-release JSON endpoints often are not. Every file downloaded from
upstream is checked against the sha256 the index gives.
"""

from __future__ import annotations

import hashlib
import html.parser
import os
import tempfile
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from packaging.requirements import InvalidRequirement as _PackagingInvalidRequirement
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.tags import Tag
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from builder.errors import IntegrityError, InvalidRequirement, NotFoundUpstream, UpstreamUnavailable
from builder.targets import BuildTarget
from builder.verify import sha256_file

JSON_ACCEPT = "application/vnd.pypi.simple.v1+json, text/html;q=0.1"
USER_AGENT = "wheelyard (+internal wheel cache)"


@dataclass(frozen=True)
class DistFile:
    """One file a project has on the index."""

    filename: str
    url: str
    sha256: str | None
    requires_python: str | None = None
    yanked: bool = False
    size: int | None = None
    upload_time: str | None = None  # PEP 700 (JSON pages only), e.g. "2023-06-01T12:00:00.123456Z"

    @property
    def is_wheel(self) -> bool:
        return self.filename.endswith(".whl")

    @property
    def is_sdist(self) -> bool:
        return self.filename.endswith((".tar.gz", ".zip"))

    def version(self) -> Version | None:
        try:
            if self.is_wheel:
                return parse_wheel_filename(self.filename)[1]
            if self.is_sdist:
                return parse_sdist_filename(self.filename)[1]
        except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
            return None
        return None

    def wheel_tags(self) -> frozenset[Tag]:
        try:
            return parse_wheel_filename(self.filename)[3]
        except (InvalidWheelFilename, InvalidVersion):
            return frozenset()


@dataclass(frozen=True)
class Release:
    """A resolved (name, version) and the files upstream has for it."""

    name: str  # canonical (PEP 503)
    version: Version
    files: tuple[DistFile, ...]

    @property
    def sdist(self) -> DistFile | None:
        sdists = [f for f in self.files if f.is_sdist and not f.yanked]
        # Prefer .tar.gz (PEP 625) over legacy .zip.
        sdists.sort(key=lambda f: not f.filename.endswith(".tar.gz"))
        return sdists[0] if sdists else None

    @property
    def wheels(self) -> list[DistFile]:
        return [f for f in self.files if f.is_wheel and not f.yanked]

    def wheel_for(self, target: BuildTarget, **limits: tuple[int, int]) -> DistFile | None:
        """The wheel pip would pick on ``target``, or None."""
        best: tuple[int, DistFile] | None = None
        for wheel in self.wheels:
            rank = target.preference(wheel.wheel_tags(), **limits)
            if rank is None:
                continue
            if wheel.requires_python and target.python is not None:
                try:
                    if not SpecifierSet(wheel.requires_python).contains(f"{target.python_version}.0"):
                        continue
                except Exception:  # noqa: BLE001 - a broken requires-python only loses the wheel
                    continue
            if best is None or rank < best[0]:
                best = (rank, wheel)
        return best[1] if best else None


def parse_requirement(text: str) -> Requirement:
    """A PEP 508 requirement naming one project, no URL, no extras that change what is built."""
    stripped = text.strip()
    if not stripped:
        raise InvalidRequirement("the requirement is empty", "name a package, e.g. markupsafe==3.0.2")
    if len(stripped) > 512:
        raise InvalidRequirement("the requirement is longer than 512 characters", "name one package and a version")
    try:
        req = Requirement(stripped)
    except _PackagingInvalidRequirement as exc:
        raise InvalidRequirement(
            f"{text!r} is not a valid requirement: {exc}",
            "write it as pip does: NAME==VERSION or NAME with a range, e.g. markupsafe==3.0.2 or 'lxml>=5,<6'",
        ) from None
    if req.url:
        raise InvalidRequirement(
            f"{text!r} points at a URL",
            "wheelyard builds releases from the upstream index: name the package and a version",
        )
    return req


class _LinkParser(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links.append(dict(attrs))


class SimpleIndex:
    """A client of one Simple API index."""

    def __init__(
        self,
        index_url: str,
        session: requests.Session | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.index_url = index_url.rstrip("/") + "/"
        self.session = session or requests.Session()
        self.session.headers.setdefault("User-Agent", USER_AGENT)
        self.timeout = timeout

    def project_files(self, name: str) -> list[DistFile]:
        canonical = canonicalize_name(name)
        url = urllib.parse.urljoin(self.index_url, f"{canonical}/")
        try:
            response = self.session.get(url, headers={"Accept": JSON_ACCEPT}, timeout=self.timeout)
        except requests.RequestException as exc:
            raise UpstreamUnavailable(
                f"the upstream index {self.index_url} did not answer: {exc.__class__.__name__}",
                "check the network and the upstream index setting (WHEELYARD_UPSTREAM_INDEX)",
            ) from exc
        if response.status_code == 404:
            raise NotFoundUpstream(
                f"the package {name!r} does not exist on the upstream index {self.index_url}",
                "check the spelling of the package name",
            )
        if response.status_code >= 400:
            raise UpstreamUnavailable(
                f"the upstream index answered {response.status_code} for {url}",
                "check the upstream index setting (WHEELYARD_UPSTREAM_INDEX) and its credentials",
            )
        return self.files_from_page(response)

    @classmethod
    def files_from_page(cls, response: requests.Response) -> list[DistFile]:
        """The files listed on a project page of a Simple API, JSON (PEP 691) or HTML (PEP 503)."""
        if "json" in response.headers.get("Content-Type", ""):
            return cls._from_json(response.json(), response.url)
        return cls._from_html(response.text, response.url)

    @staticmethod
    def _from_json(data: dict[str, Any], base: str) -> list[DistFile]:
        files = []
        for entry in data.get("files", []):
            yanked = entry.get("yanked", False)
            files.append(
                DistFile(
                    filename=entry["filename"],
                    url=urllib.parse.urljoin(base, entry["url"]),
                    sha256=entry.get("hashes", {}).get("sha256"),
                    requires_python=entry.get("requires-python"),
                    yanked=bool(yanked),
                    size=entry.get("size"),
                    upload_time=entry.get("upload-time") if isinstance(entry.get("upload-time"), str) else None,
                )
            )
        return files

    @staticmethod
    def _from_html(text: str, base: str) -> list[DistFile]:
        parser = _LinkParser()
        parser.feed(text)
        files = []
        for attrs in parser.links:
            href = attrs.get("href")
            if not href:
                continue
            url = urllib.parse.urljoin(base, href)
            parsed = urllib.parse.urlparse(url)
            filename = urllib.parse.unquote(parsed.path.rsplit("/", 1)[-1])
            fragment = urllib.parse.parse_qs(parsed.fragment)
            sha = fragment.get("sha256", [None])[0]
            files.append(
                DistFile(
                    filename=filename,
                    url=parsed._replace(fragment="").geturl(),
                    sha256=sha,
                    requires_python=attrs.get("data-requires-python"),
                    yanked="data-yanked" in attrs,
                )
            )
        return files

    def resolve(self, requirement: Requirement | str) -> Release:
        """The newest release that satisfies the requirement, with its files."""
        req = parse_requirement(requirement) if isinstance(requirement, str) else requirement
        files = self.project_files(req.name)
        by_version: dict[Version, list[DistFile]] = {}
        for f in files:
            version = f.version()
            if version is not None:
                by_version.setdefault(version, []).append(f)
        # A pinned yanked release is still allowed (PEP 592); a range skips yanked ones.
        pinned = any(s.operator in ("==", "===") for s in req.specifier)
        candidates = [
            v
            for v, fs in by_version.items()
            if req.specifier.contains(v, prereleases=bool(req.specifier.prereleases) or pinned)
            and (pinned or not all(f.yanked for f in fs))
        ]
        if not candidates:
            known = sorted(by_version)[-5:]
            raise NotFoundUpstream(
                f"no release of {req.name} on the upstream index satisfies {str(req.specifier) or 'any version'}",
                f"newest releases there: {', '.join(map(str, known)) or 'none'}",
            )
        version = max(candidates)
        return Release(canonicalize_name(req.name), version, tuple(by_version[version]))

    def download(
        self,
        dist: DistFile,
        dest_dir: Path,
        progress: Callable[[int, int | None], None] | None = None,
    ) -> Path:
        """Download a file into dest_dir, checking its sha256; the file appears only when whole."""
        if not dist.sha256:
            raise IntegrityError(
                f"the upstream index gives no sha256 for {dist.filename}",
                "use an index that publishes file hashes (every PEP 503/691 index can)",
            )
        dest_dir.mkdir(parents=True, exist_ok=True)
        final = dest_dir / dist.filename
        if final.exists() and sha256_file(final) == dist.sha256:
            return final
        digest = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(prefix=".download-", dir=dest_dir)
        try:
            with os.fdopen(fd, "wb") as out:
                try:
                    with self.session.get(dist.url, stream=True, timeout=self.timeout) as response:
                        response.raise_for_status()
                        total = int(response.headers.get("Content-Length", 0)) or dist.size
                        done = 0
                        for chunk in response.iter_content(1 << 16):
                            out.write(chunk)
                            digest.update(chunk)
                            done += len(chunk)
                            if progress:
                                progress(done, total)
                except requests.RequestException as exc:
                    raise UpstreamUnavailable(
                        f"downloading {dist.filename} failed: {exc}",
                        "check the network and the upstream index",
                    ) from exc
            if digest.hexdigest() != dist.sha256:
                raise IntegrityError(
                    f"{dist.filename} does not match the sha256 the upstream index gives "
                    f"(expected {dist.sha256}, got {digest.hexdigest()})",
                    "the download was corrupted or the index is compromised; nothing was used",
                )
            os.replace(tmp, final)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return final
