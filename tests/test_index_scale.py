"""The index at scale, for real: a project of 5,000 files (a page of more than 1 MB) among 1,000
projects, served by the embedded server and by nginx. A publish into it is listed at once and
whole (HTML, JSON, gzip, the root), and real pip and uv resolve against it from the metadata files
alone. Time to first byte and memory against the number of projects: bench/index_scale.py.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from server.index.site import IndexSite
from tests.conftest import isolated_pip_env, wait_until
from tests.index_parts import SERVERS, access_log, dist_wheel, parse_links, upload_file, wheel_bodies_fetched
from tests.test_index import Index, running_index

BIG, BIG_FILES, PROJECTS = "huge-project", 5000, 1000
JSON = "application/vnd.pypi.simple.v1+json"


@pytest.fixture(scope="module")
def big_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory of wheels, with its pages written as ``wheelyard reindex-pages`` writes them."""
    root = tmp_path_factory.mktemp("scale")
    wheels = root / "data" / "wheels"
    for n in range(BIG_FILES):
        dist_wheel(wheels, BIG, f"1.{n}", requires_python=">=3.8")
    for i in range(PROJECTS - 1):
        dist_wheel(wheels, f"scale-{i:04d}", "1.0")
    report = IndexSite(root / "data").rebuild()
    assert (report.projects, report.files, report.hashed) == (PROJECTS, BIG_FILES + PROJECTS - 1, report.files)
    return root / "data"


@pytest.fixture(params=SERVERS)
def big_index(request: pytest.FixtureRequest, big_tree: Path) -> Iterator[Index]:
    if request.param == "nginx" and shutil.which("nginx") is None:
        pytest.skip("no nginx on this machine")
    with running_index(big_tree, WHEELYARD_INDEX_SERVER=request.param) as index:
        yield index


def _page(index: Index, path: str, accept: str | None = None, encoding: str = "identity") -> requests.Response:
    headers = {"Accept-Encoding": encoding, **({"Accept": accept} if accept else {})}
    response = requests.get(index.url + path, headers=headers, timeout=60, stream=True)
    response.raw.decode_content = False
    response._content = response.raw.read()  # the bytes as sent, not decoded
    assert response.status_code == 200, (path, response.status_code)
    return response


def test_a_publish_into_a_project_of_5000_files_is_listed_whole(big_index: Index, tmp_path: Path) -> None:
    index = big_index
    before = len([f for f in index.visible_files() if f.startswith("huge_project-")])
    version = f"3.{before}"  # each server's run publishes a newer file of its own into the same tree
    new = dist_wheel(tmp_path / "dist", BIG, version, requires_python=">=3.8", requires=("scale-0007>=1",))
    fresh = dist_wheel(tmp_path / "dist", f"scale-new-{index.port}", "1.0")
    for wheel in (new, fresh):
        assert upload_file(index, wheel).status_code == 200

    # Listed as soon as the upload is answered: every file, in each form, and the new project at the root.
    html = _page(index, f"/simple/{BIG}/")
    assert len(html.content) > 1 << 20
    links = parse_links(html.text).links
    assert len(links) == before + 1
    sha256 = hashlib.sha256(new.read_bytes()).hexdigest()
    mine = [link for link in links if str(link["href"]).startswith(f"../../packages/{new.name}#")]
    assert mine and mine[0]["href"].endswith(f"#sha256={sha256}")  # type: ignore[union-attr]
    assert all(link.get("data-core-metadata", "").startswith("sha256=") for link in links)  # type: ignore[union-attr]
    assert gzip.decompress(_page(index, f"/simple/{BIG}/", encoding="gzip").content) == html.content
    document = json.loads(_page(index, f"/simple/{BIG}/", JSON).content)
    assert len(document["files"]) == before + 1 and version in document["versions"]
    entry = next(f for f in document["files"] if f["filename"] == new.name)
    assert entry["hashes"] == {"sha256": sha256} and entry["size"] == new.stat().st_size
    assert entry["requires-python"] == ">=3.8" and entry["core-metadata"]["sha256"]
    root = json.loads(_page(index, "/simple/", JSON).content)
    names = {p["name"] for p in root["projects"]}
    assert len(names) >= PROJECTS + 1 and f"scale-new-{index.port}" in names and BIG in names

    _assert_pip_and_uv_resolve_from_metadata(index, tmp_path, version)


def _assert_pip_and_uv_resolve_from_metadata(index: Index, tmp_path: Path, version: str) -> None:
    from uv import find_uv_bin

    simple = index.url + "/simple/"
    start = len(access_log(index))
    env = isolated_pip_env(UV_CACHE_DIR=str(tmp_path / "uv-cache"))
    (tmp_path / "req.in").write_text(f"{BIG}\n")
    compiled = subprocess.run(
        [str(find_uv_bin()), "pip", "compile", "--index-url", simple, "--python", sys.executable,
         "--python-version", "3.12", "--no-cache", "req.in"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert compiled.returncode == 0, compiled.stderr
    assert f"{BIG}=={version}" in compiled.stdout and "scale-0007==1.0" in compiled.stdout
    report = tmp_path / "report.json"
    dry = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-cache-dir", "--ignore-installed",
         "--index-url", simple, "--report", str(report), BIG],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    installs = {i["metadata"]["name"]: i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}
    assert installs == {BIG: version, "scale-0007": "1.0"}

    def logged() -> str | None:
        log = access_log(index)[start:]
        return log if log.count(".whl.metadata") >= 4 else None

    log = wait_until(logged, 30, "the metadata requests in the access log")
    assert wheel_bodies_fetched(log) == [], log


def test_a_start_keeps_the_pages_of_unchanged_projects_and_reindex_writes_them_all(tmp_path: Path) -> None:
    from server.index import pages

    wheels = tmp_path / "data" / "wheels"
    for name in ("kept-a", "kept-b"):
        dist_wheel(wheels, name, "1.0")
    site = IndexSite(tmp_path / "data")
    site.rebuild()
    page = site.simple / "kept-a" / "index.html"
    inode = page.stat().st_ino
    assert site.rebuild().hashed == 0 and page.stat().st_ino == inode, "an unchanged project's pages stay"
    dist_wheel(wheels, "kept-a", "2.0")
    site.rebuild()
    assert page.stat().st_ino != inode and "kept_a-2.0-py3-none-any.whl" in page.read_text()
    inode = page.stat().st_ino
    site.rebuild(force=True)
    assert page.stat().st_ino != inode, "reindex-pages writes every page"
    inode = page.stat().st_ino
    state = site.state / "kept-a.json"
    state.write_text(state.read_text().replace(f'"format": {pages.PAGE_FORMAT}', '"format": 0'))
    site.rebuild()
    assert page.stat().st_ino != inode, "pages of an older format are written again"
    (site.simple / "kept-b" / "index.json.gz").unlink()
    site.rebuild()
    assert (site.simple / "kept-b" / "index.json.gz").is_file(), "a missing page is written again"
