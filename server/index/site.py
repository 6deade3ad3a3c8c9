"""The index's static tree, written at publish time: what every client reads.

Layout under ``DATA_DIR/site/`` (a static server serves it as it is)::

    simple/index.{html,vhtml,json}[.gz]          every project (PEP 503 / 691)
    simple/<name>/index.{html,vhtml,json}[.gz]   one project's files
    packages/<file>                              the file (a hard link to wheels/<file>)
    packages/<file>.metadata                     a wheel's METADATA (PEP 658), extracted once

``index.html`` and ``index.vhtml`` are one file under two names, so that a static server can
give it the content type the client asked for (``text/html`` or PEP 691's v1 HTML type) from
its extension alone; each page has a gzip twin for servers that send it as it is.

What each file is (hash, size, upload time, requires-python, metadata hash, yank state) is
kept per project in ``DATA_DIR/index-state/<name>.json``, so a publish rewrites one project's
pages from that record without reading the other files again. Every write is a temporary
file then ``os.replace``: a client sees the old page or the new one, never half of one; and
a file is linked into ``packages/`` before any page names it. A lock per project (``flock``,
so it holds across processes: the index, the API's yank, ``wheelyard reindex-pages``) makes
concurrent publishes of one project each add their file to the latest record.
"""

from __future__ import annotations

import contextlib
import datetime
import email.parser
import errno
import fcntl
import gzip
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name

from builder.errors import NotOnIndex, WheelRejected, WheelyardError
from builder.verify import sha256_file
from server.index import pages
from server.index.pages import FileEntry

MAX_METADATA_BYTES = 16 << 20
_PROJECT_NAME = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)
_CHUNK = 1 << 20
# The pages are mostly hex hashes: level 3 makes them ~6% larger than level 6 in a third of the
# time, which a publish to a project of hundreds of files spends on each of its two pages.
GZIP_LEVEL = 3
PAGE_FILES = ("index.html", "index.vhtml", "index.json", "index.html.gz", "index.vhtml.gz", "index.json.gz")


@dataclass(frozen=True)
class RebuildReport:
    projects: int
    files: int
    hashed: int  # files whose hash had to be computed (new to the record, or changed size)


class IndexSite:
    """The static tree of one data directory, and the only code that writes it."""

    def __init__(self, data_dir: Path) -> None:
        self.files_dir = data_dir / "wheels"
        self.root = data_dir / "site"
        self.simple = self.root / "simple"
        self.packages = self.root / "packages"
        self.state = data_dir / "index-state"
        # Publishes of new projects ask for the root to be written again after their record is
        # saved; one rewrite serves every publish that asked before it listed the records.
        self._root_counter = threading.Lock()
        self._root_writer = threading.Lock()
        self._root_asked = self._root_written = 0
        self._dirs_made = False

    def ensure_dirs(self) -> None:
        for d in (self.files_dir, self.simple, self.packages, self.state):
            d.mkdir(parents=True, exist_ok=True)

    # -- publishing ---------------------------------------------------------------------
    def publish(self, filename: str, *, sha256: str | None = None) -> FileEntry:
        """Make the published file ``files_dir/filename`` visible: its link and metadata
        first, then its project's pages, then (for a new project) the root."""
        if not self._dirs_made:  # once per process: the upload endpoint publishes many files
            self.ensure_dirs()
            self._dirs_made = True
        name, _ = pages.project_and_version(filename)
        source = self.files_dir / filename
        entry = self._describe(source, sha256=sha256)
        with self._locked(name):
            records = self._load(name)
            records[filename] = entry
            self._save(name, records)
            self._write_project(name, records)
            is_new = len(records) == 1 or not (self.simple / name / "index.html").exists()
        if is_new or not (self.simple / "index.html").exists():
            self._write_root_after_change()
        return entry

    def _write_root_after_change(self) -> None:
        """The root written again after this thread's record was saved: concurrent publishes of
        new projects share one rewrite (which lists every record saved before it began)."""
        with self._root_counter:
            self._root_asked += 1
            mine = self._root_asked
        with self._root_writer:
            if self._root_written >= mine:
                return  # a rewrite that began after this record was saved has listed it
            with self._root_counter:
                covered = self._root_asked
            self.write_root()
            self._root_written = covered

    def set_yanked(self, project: str, version: str, reason: str | None) -> list[str]:
        """Yank (``reason`` a string, may be empty) or un-yank (``None``) every file of a
        release; returns their filenames. The files stay downloadable (PEP 592)."""
        if not _PROJECT_NAME.match(project):
            raise NotOnIndex(f"{project!r} is not a project name", "give the name as pip knows it, e.g. markupsafe")
        name = canonicalize_name(project)
        with self._locked(name):
            records = self._load(name)
            changed = [f for f in records if pages.project_and_version(f)[1] == _normal_version(version)]
            if not changed:
                held = sorted({pages.project_and_version(f)[1] for f in records})
                raise NotOnIndex(
                    f"the index has no files of {name} {version}",
                    f"versions on the index: {', '.join(held)}" if held else f"the index holds no project {name}",
                )
            for f in changed:
                records[f] = replace(records[f], yanked=reason)
            self._save(name, records)
            self._write_project(name, records)
        return sorted(changed)

    def rebuild(self, *, force: bool = False) -> RebuildReport:
        """Every page again from the files (recovery with ``force``; also run when the index starts).

        A file already in its project's record with the same size keeps its hash, upload
        time and yank state; any other is read again. Without ``force``, a project whose
        record is unchanged, written in this version's page format, keeps its pages as they
        are: a start costs a ``stat`` per file, whatever the number of projects."""
        self.ensure_dirs()
        by_project = self._files_by_project()
        hashed = files = 0
        for name, paths in by_project.items():
            with self._locked(name):
                old, page_format = self._load_state(name)
                records: dict[str, FileEntry] = {}
                for path in paths:
                    known = old.get(path.name)
                    if known is not None and known.size == path.stat().st_size and self._linked(path):
                        records[path.name] = known
                        continue
                    fresh = self._describe(path)
                    if known is not None:
                        fresh = replace(fresh, upload_time=known.upload_time, yanked=known.yanked)
                    records[path.name] = fresh
                    hashed += 1
                files += len(records)
                if force or records != old or page_format != pages.PAGE_FORMAT or not self._has_pages(name):
                    self._save(name, records)
                    self._write_project(name, records)
        for stale in self.projects():
            if stale not in by_project:
                (self.state / f"{stale}.json").unlink(missing_ok=True)
        self.write_root()
        return RebuildReport(projects=len(by_project), files=files, hashed=hashed)

    def _files_by_project(self) -> dict[str, list[Path]]:
        by_project: dict[str, list[Path]] = {}
        for path in self.files_dir.iterdir():
            if path.name.startswith(".") or not path.is_file():
                continue
            try:
                name, _ = pages.project_and_version(path.name)
            except ValueError:
                continue
            by_project.setdefault(name, []).append(path)
        return by_project

    def _has_pages(self, name: str) -> bool:
        directory = self.simple / name
        return all((directory / f).is_file() for f in PAGE_FILES)

    def write_root(self) -> None:
        with self._locked(".root"):
            names = self.projects()
            self._write_page(self.simple, pages.root_html(names), pages.root_json(names))

    def projects(self) -> list[str]:
        """The projects that have a record (one ``NAME.json`` each; temporary files start with a dot)."""
        try:
            with os.scandir(self.state) as found:
                return sorted(e.name[:-5] for e in found if e.name.endswith(".json") and not e.name.startswith("."))
        except FileNotFoundError:
            return []

    def entries(self, project: str) -> list[FileEntry]:
        return pages.sorted_entries(self._load(canonicalize_name(project)).values())

    # -- the parts ----------------------------------------------------------------------
    def _describe(self, source: Path, *, sha256: str | None = None) -> FileEntry:
        """What a published file is, with its link and (for a wheel) metadata file made."""
        self._link(source)
        stat = source.stat()
        requires_python = metadata_sha256 = None
        if source.name.endswith(".whl"):
            metadata = extract_metadata(source)
            metadata_sha256 = hashlib.sha256(metadata).hexdigest()
            _replace(self.packages / f"{source.name}.metadata", metadata)
            requires_python = requires_python_of(metadata)
        else:
            requires_python = _sdist_requires_python(source)
        uploaded = datetime.datetime.fromtimestamp(stat.st_mtime, datetime.timezone.utc)
        return FileEntry(
            filename=source.name,
            sha256=sha256 or sha256_file(source),
            size=stat.st_size,
            upload_time=uploaded.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            requires_python=requires_python,
            metadata_sha256=metadata_sha256,
        )

    def _linked(self, source: Path) -> bool:
        target = self.packages / source.name
        try:
            same = os.path.samestat(target.stat(), source.stat())
        except FileNotFoundError:
            return False
        return same and (not source.name.endswith(".whl") or (self.packages / f"{source.name}.metadata").exists())

    def _link(self, source: Path) -> None:
        target = self.packages / source.name
        try:
            os.link(source, target)
        except FileExistsError:
            if os.path.samestat(target.stat(), source.stat()):
                return
            # Not the published file (a copy across file systems, or a leftover): replace it
            # with the published bytes; published files themselves never change.
            _copy_replace(source, target)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise
            _copy_replace(source, target)

    def _write_project(self, name: str, records: dict[str, FileEntry]) -> None:
        entries = pages.sorted_entries(records.values())
        directory = self.simple / name
        directory.mkdir(parents=True, exist_ok=True)
        self._write_page(directory, pages.project_html(name, entries), pages.project_json(name, entries))

    @staticmethod
    def _write_page(directory: Path, html_page: bytes, json_page: bytes) -> None:
        _replace(directory / "index.json.gz", _gzip(json_page))
        _replace(directory / "index.json", json_page)
        _replace(directory / "index.html.gz", _gzip(html_page), also=directory / "index.vhtml.gz")
        _replace(directory / "index.html", html_page, also=directory / "index.vhtml")

    def _load(self, name: str) -> dict[str, FileEntry]:
        return self._load_state(name)[0]

    def _load_state(self, name: str) -> tuple[dict[str, FileEntry], int | None]:
        """A project's record, and the page format its pages were last written in."""
        path = self.state / f"{name}.json"
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            return {}, None
        records = {f: FileEntry.from_dict(e) for f, e in data.get("files", {}).items()}
        return records, data.get("format")

    def _save(self, name: str, records: dict[str, FileEntry]) -> None:
        # A file a line, each encoded by json's C encoder (``indent`` would use the slow Python one).
        lines = ",\n".join(f"{json.dumps(f)}: {json.dumps(e.to_dict())}" for f, e in sorted(records.items()))
        data = f'{{"format": {pages.PAGE_FORMAT}, "files": {{\n{lines}\n}}}}\n'
        _replace(self.state / f"{name}.json", data.encode(), sync=True)

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        self.state.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.state / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock


def extract_metadata(wheel: Path) -> bytes:
    """The METADATA of a (verified) wheel: the one in its top-level ``.dist-info``."""
    name, version = pages.project_and_version(wheel.name)
    with zipfile.ZipFile(wheel) as zf:
        candidates = [
            i
            for i in zf.infolist()
            if i.filename.count("/") == 1
            and i.filename.endswith(".dist-info/METADATA")
            and canonicalize_name(i.filename.split("/")[0][: -len(".dist-info")].rsplit("-", 1)[0]) == name
        ]
        if len(candidates) != 1:
            raise WheelRejected(
                f"{wheel.name} has {len(candidates)} METADATA files for {name} at its top level; a wheel has one",
                "build the wheel again with a standard build backend",
            )
        info = candidates[0]
        if info.file_size > MAX_METADATA_BYTES:
            raise WheelRejected(f"{wheel.name}'s METADATA is {info.file_size} bytes; at most {MAX_METADATA_BYTES}")
        with zf.open(info) as fh:
            return fh.read(MAX_METADATA_BYTES + 1)[:MAX_METADATA_BYTES]


def requires_python_of(metadata: bytes) -> str | None:
    """``Requires-Python`` of a METADATA/PKG-INFO, if it is a valid specifier set."""
    headers = email.parser.BytesHeaderParser().parsebytes(metadata)
    value = headers.get("Requires-Python")
    if not value:
        return None
    value = " ".join(str(value).split())
    try:
        SpecifierSet(value)
    except InvalidSpecifier:
        return None  # a client would refuse the whole page's constraint; show none instead
    return value


def _sdist_requires_python(path: Path) -> str | None:
    from server.index.sdist_check import read_pkg_info

    try:
        return requires_python_of(read_pkg_info(path))
    except WheelyardError:
        return None


def _normal_version(version: str) -> str:
    from packaging.version import InvalidVersion, Version

    try:
        return str(Version(version))
    except InvalidVersion:
        raise NotOnIndex(f"{version!r} is not a version", "give a version such as 1.2.0") from None


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)


def _replace(path: Path, data: bytes, *, also: Path | None = None, sync: bool = False) -> None:
    """Write ``data`` to ``path`` (and ``also``, the same file under another name) atomically."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    twin = f"{tmp}.twin"
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if sync:
                fh.flush()
                os.fsync(fh.fileno())
        if also is not None:
            os.link(tmp, twin)
            os.replace(twin, also)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        Path(twin).unlink(missing_ok=True)
        raise


def _copy_replace(source: Path, target: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out, source.open("rb") as src:
            shutil.copyfileobj(src, out, _CHUNK)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
