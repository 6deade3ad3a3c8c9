"""What the private index holds, and which of its projects are private.

Which projects are private (people uploaded some of their files) is ``server/private.py``'s rule.

The index's files are read from its wheel directory where this process has the index's own
(``wheelyard up``, one host: a listing costs no request and no hashing), else from its Simple API.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion

from builder.config import Settings
from builder.errors import IndexUnavailable
from builder.publish import redact_url
from builder.records import BuildStore
from builder.targets import BuildTarget
from builder.upstream import SimpleIndex
from server.private import is_private as is_private_on_index
from server.private import normal_version

_PROJECT_LINK = re.compile(r'<a href="([^"/]+)/?"')


@dataclass(frozen=True)
class IndexFile:
    filename: str
    version: str  # normalised, as packaging prints it

    def fits(self, target: BuildTarget, glibc_max: tuple[int, int]) -> bool:
        if not self.filename.endswith(".whl"):
            return False
        return target.accepts(parse_wheel_filename(self.filename)[3], glibc_max=glibc_max)


def file_of(filename: str) -> tuple[str, IndexFile] | None:
    """(canonical project name, file) for a wheel or sdist filename; None for anything else."""
    try:
        if filename.endswith(".whl"):
            name, version, _, _ = parse_wheel_filename(filename)
        else:
            name, version = parse_sdist_filename(filename)
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None
    return canonicalize_name(name), IndexFile(filename, str(version))


class Holdings:
    """The index's projects and files, read once per ensure (a project's files on first use)."""

    def __init__(
        self,
        index_url: str,
        *,
        wheel_dir: Path | None = None,
        auth: tuple[str, str] | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.root = index_url.rstrip("/").removesuffix("/simple") + "/"
        self.auth = auth
        self.session = session or requests.Session()
        self._files: dict[str, list[IndexFile]] = {}
        self.projects = self._projects()
        self._local = wheel_dir is not None and self._read_directory(wheel_dir)

    def files(self, name: str) -> list[IndexFile]:
        canonical = canonicalize_name(name)
        if canonical not in self.projects:
            return []
        if canonical not in self._files:
            self._files[canonical] = self._project_files(canonical)
        return self._files[canonical]

    def wheel_for(self, name: str, version: str, target: BuildTarget, glibc_max: tuple[int, int]) -> str | None:
        """A wheel of name==version on the index that installs on ``target``, or None."""
        wanted = normal_version(version)
        for f in self.files(name):
            if f.version == wanted and f.fits(target, glibc_max):
                return f.filename
        return None

    def file_url(self, filename: str) -> str:
        """Where a client downloads ``filename`` (with the read credentials, where the index needs them)."""
        url = urllib.parse.urljoin(self.root, f"packages/{urllib.parse.quote(filename)}")
        if self.auth is None:
            return url
        parts = urllib.parse.urlsplit(url)
        user, password = (urllib.parse.quote(p, safe="") for p in self.auth)
        return parts._replace(netloc=f"{user}:{password}@{parts.netloc}").geturl()

    # -- reading -------------------------------------------------------------------------------
    def _get(self, path: str) -> requests.Response:
        url = urllib.parse.urljoin(self.root, path)
        try:
            response = self.session.get(url, auth=self.auth, timeout=30)
        except requests.RequestException as exc:
            raise IndexUnavailable(
                f"the wheelyard index at {redact_url(self.root)} did not answer: {type(exc).__name__}",
                "start it (wheelyard up or wheelyard index) and check WHEELYARD_INDEX_URL",
            ) from None
        if response.status_code in (401, 403):
            raise IndexUnavailable(
                f"the wheelyard index at {redact_url(self.root)} refused to list its projects",
                "set WHEELYARD_INDEX_READ_PASSWORD for the API, as the index has it",
            )
        return response

    def _projects(self) -> set[str]:
        response = self._get("simple/")
        if response.status_code != 200:
            raise IndexUnavailable(f"the wheelyard index answered {response.status_code} for its project list")
        # pypiserver's root page: one <a href="NAME/"> per project.
        return {canonicalize_name(urllib.parse.unquote(h)) for h in _PROJECT_LINK.findall(response.text)}

    def _read_directory(self, wheel_dir: Path) -> bool:
        """Take the files from ``wheel_dir`` when it is the index's own: it lists the same projects."""
        try:
            entries = [e for e in os.listdir(wheel_dir) if not e.startswith(".")]
        except OSError:
            return False
        files: dict[str, list[IndexFile]] = {}
        for entry in entries:
            parsed = file_of(entry)
            if parsed is not None:
                files.setdefault(parsed[0], []).append(parsed[1])
        if set(files) != self.projects:
            return False
        self._files = files
        return True

    def _project_files(self, name: str) -> list[IndexFile]:
        response = self._get(f"simple/{name}/")
        if response.status_code == 404:
            return []
        if response.status_code != 200:
            raise IndexUnavailable(f"the wheelyard index answered {response.status_code} for {name}")
        out = []
        for f in SimpleIndex.files_from_page(response):
            parsed = file_of(f.filename)
            if parsed is not None:
                out.append(parsed[1])
        return out


def private_check(settings: Settings, store: BuildStore) -> Callable[[str], bool]:
    """Whether a name is private on this deployment's index, for the build service to refuse it.

    An index that cannot be asked counts as holding the name: nothing is mirrored or built from
    upstream under a name that might be private (the request is refused, and can be sent again).
    """
    root = settings.index_url.rstrip("/").removesuffix("/simple") + "/"
    auth = read_auth(settings)
    session = requests.Session()

    def is_private(name: str) -> bool:
        canonical = canonicalize_name(name)
        try:
            response = session.get(f"{root}simple/{canonical}/", auth=auth, timeout=10, allow_redirects=False)
        except requests.RequestException:
            raise IndexUnavailable(
                f"the wheelyard index at {redact_url(root)} did not answer, so whether {canonical} is a private "
                "project there is unknown; nothing was queued",
                "start the index (wheelyard up or wheelyard index) and send the request again",
            ) from None
        if response.status_code == 404:
            return False
        if response.status_code != 200:
            raise IndexUnavailable(
                f"the wheelyard index at {redact_url(root)} answered {response.status_code} for {canonical}, so "
                "whether it is a private project there is unknown; nothing was queued",
                "give the API the index's read password (WHEELYARD_INDEX_READ_PASSWORD) and check the index",
            )
        return is_private_on_index(store, canonical, [f.filename for f in SimpleIndex.files_from_page(response)])

    return is_private


def read_auth(settings: Settings) -> tuple[str, str] | None:
    """The credentials that read the index: the read password, as the user ``reader`` (docs/index.md)."""
    return ("reader", settings.index_read_password) if settings.index_read_password else None
