"""The index's static pages, for real: ``python -m server.index`` with nginx and with the embedded
server in front of pypiserver, real uploads, real pip and uv reading."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import socket
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
import requests

from tests.conftest import isolated_pip_env, wait_until
from tests.index_parts import (
    SERVERS,
    DemandRecorder,
    access_log,
    demand_recorder,
    dist_wheel,
    parse_links,
    upload_file,
    wheel_bodies_fetched,
)
from tests.test_index import Index, running_index

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
VHTML_TYPE = "application/vnd.pypi.simple.v1+html"

# PEP 691's JSON schema of a project page, with the keys PEP 700 (versions, size, upload-time)
# and PEP 714 (core-metadata) add.
_META_HASHES = {"oneOf": [{"type": "boolean"}, {"type": "object", "additionalProperties": {"type": "string"}}]}
PROJECT_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "versions": {"type": "array", "items": {"type": "string"}},
        "files": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "filename": {"type": "string"},
                    "url": {"type": "string"},
                    "hashes": {"type": "object", "additionalProperties": {"type": "string"}},
                    "requires-python": {"type": "string"},
                    "dist-info-metadata": _META_HASHES,
                    "core-metadata": _META_HASHES,
                    "gpg-sig": {"type": "boolean"},
                    "yanked": {"oneOf": [{"type": "boolean"}, {"type": "string"}]},
                    "size": {"type": "integer", "minimum": 0},
                    "upload-time": {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$"},
                },
                "required": ["filename", "url", "hashes", "size", "upload-time"],
            },
        },
        "meta": {
            "type": "object",
            "properties": {"api-version": {"type": "string"}},
            "required": ["api-version"],
        },
    },
    "required": ["name", "files", "meta", "versions"],
}
ROOT_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {
        "projects": {
            "type": "array",
            "items": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
        },
        "meta": {"type": "object", "properties": {"api-version": {"type": "string"}}, "required": ["api-version"]},
    },
    "required": ["projects", "meta"],
}


@pytest.fixture(scope="module", params=SERVERS)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Index, DemandRecorder]]:
    """An index with three projects published, behind each static server in turn."""
    root = tmp_path_factory.mktemp(f"served-{request.param}")
    with (
        demand_recorder() as api,
        running_index(root / "data", WHEELYARD_INDEX_SERVER=request.param, WHEELYARD_API_URL=api.url) as index,
    ):
        dist = root / "dist"
        for wheel in (
            dist_wheel(dist, "app", "1.0", requires_python=">=3.8", requires=("lib>=1.0",)),
            dist_wheel(dist, "lib", "1.0", requires_python=">=3.8"),
            dist_wheel(dist, "lib", "2.0", requires_python=">=3.9, <4", payload=os.urandom(300_000)),
            dist_wheel(dist, "Other_Project", "0.1"),
        ):
            response = upload_file(index, wheel)
            assert response.status_code == 200, response.text
        yield index, api


def test_every_link_carries_its_hash_metadata_and_requires_python(served: tuple[Index, DemandRecorder]) -> None:
    index, _ = served
    response = requests.get(index.url + "/simple/lib/", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    page = parse_links(response.text)
    assert page.meta["pypi:repository-version"] == "1.1"
    assert [link["href"].split("#")[0].rsplit("/", 1)[1] for link in page.links] == [  # type: ignore[union-attr]
        "lib-1.0-py3-none-any.whl",
        "lib-2.0-py3-none-any.whl",
    ]
    for link, requires in zip(page.links, (">=3.8", ">=3.9, <4"), strict=True):
        href = str(link["href"])
        url, _, fragment = requests.compat.urljoin(response.url, href).partition("#")
        body = requests.get(url, timeout=10).content
        assert fragment == "sha256=" + hashlib.sha256(body).hexdigest()
        assert link["data-requires-python"] == requires
        metadata = requests.get(url + ".metadata", timeout=10)
        assert metadata.status_code == 200
        assert b"Requires-Python: " + requires.encode() in metadata.content
        expected = "sha256=" + hashlib.sha256(metadata.content).hexdigest()
        assert link["data-core-metadata"] == expected
        assert link["data-dist-info-metadata"] == expected
        assert "data-yanked" not in link


def test_json_pages_follow_the_schema_of_pep_691_and_700(served: tuple[Index, DemandRecorder]) -> None:
    index, _ = served
    headers = {"Accept": JSON_TYPE}
    root = requests.get(index.url + "/simple/", headers=headers, timeout=10)
    assert root.headers["Content-Type"] == JSON_TYPE
    jsonschema.validate(root.json(), ROOT_SCHEMA)
    assert [p["name"] for p in root.json()["projects"]] == ["app", "lib", "other-project"]
    page = requests.get(index.url + "/simple/lib/", headers=headers, timeout=10)
    data = page.json()
    jsonschema.validate(data, PROJECT_SCHEMA)
    assert data["meta"]["api-version"] == "1.1"
    assert data["name"] == "lib" and data["versions"] == ["1.0", "2.0"]
    for entry in data["files"]:
        body = requests.get(requests.compat.urljoin(page.url, entry["url"]), timeout=10).content
        assert entry["size"] == len(body)
        assert entry["hashes"]["sha256"] == hashlib.sha256(body).hexdigest()
        metadata = requests.get(requests.compat.urljoin(page.url, entry["url"]) + ".metadata", timeout=10).content
        assert entry["core-metadata"] == {"sha256": hashlib.sha256(metadata).hexdigest()}
        assert entry["dist-info-metadata"] == entry["core-metadata"]
        assert entry["yanked"] is False
    assert [e["requires-python"] for e in data["files"]] == [">=3.8", ">=3.9, <4"]


# PEP 691's Accept forms ("Version + Format Selection" and its client examples), and what
# the PEP's rules choose for each: the highest q wins; none acceptable is 406.
ACCEPT_FORMS = [
    (None, "text/html"),
    ("text/html", "text/html"),
    ("*/*", "text/html"),
    (JSON_TYPE, JSON_TYPE),
    ("application/vnd.pypi.simple.latest+json", JSON_TYPE),
    (VHTML_TYPE, VHTML_TYPE),
    ("application/vnd.pypi.simple.latest+html", VHTML_TYPE),
    (f"{JSON_TYPE}, {VHTML_TYPE};q=0.2, text/html;q=0.01", JSON_TYPE),
    (f"{JSON_TYPE}, {VHTML_TYPE}; q=0.1, text/html; q=0.01", JSON_TYPE),
    (f"{VHTML_TYPE}, text/html;q=0.01", VHTML_TYPE),
    (f"text/html;q=0.5, {JSON_TYPE};q=0.4", "text/html"),
    ("application/vnd.pypi.simple.v2+json", 406),
    ("application/json", 406),
    (f"{JSON_TYPE};q=0", 406),
]


@pytest.mark.parametrize(("accept", "expected"), ACCEPT_FORMS)
def test_content_negotiation_follows_pep_691(
    served: tuple[Index, DemandRecorder], accept: str | None, expected: str | int
) -> None:
    index, _ = served
    headers = {"Accept": accept} if accept is not None else {}
    session = requests.Session()
    if accept is None:
        session.headers.pop("Accept", None)
    for path in ("/simple/", "/simple/lib/"):
        response = session.get(index.url + path, headers=headers, timeout=10)
        assert "Accept" in response.headers.get("Vary", ""), response.headers
        if expected == 406:
            assert response.status_code == 406
            continue
        assert response.status_code == 200
        assert response.headers["Content-Type"].split(";")[0] == expected
        if expected == JSON_TYPE:
            assert "meta" in response.json()
        else:
            assert response.text.startswith("<!DOCTYPE html>")


def test_caching_head_range_and_gzip(served: tuple[Index, DemandRecorder]) -> None:
    index, _ = served
    page = requests.get(index.url + "/simple/lib/", headers={"Accept-Encoding": "identity"}, timeout=10)
    etag, modified = page.headers["ETag"], page.headers["Last-Modified"]
    again = requests.get(
        index.url + "/simple/lib/", headers={"Accept-Encoding": "identity", "If-None-Match": etag}, timeout=10
    )
    assert again.status_code == 304 and again.content == b""
    since = requests.get(
        index.url + "/simple/lib/", headers={"Accept-Encoding": "identity", "If-Modified-Since": modified}, timeout=10
    )
    assert since.status_code == 304
    zipped = requests.get(index.url + "/simple/lib/", headers={"Accept-Encoding": "gzip"}, stream=True, timeout=10)
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(zipped.raw.read()) == page.content
    wheel = index.url + "/packages/lib-2.0-py3-none-any.whl"
    whole = requests.get(wheel, timeout=10).content
    head = requests.head(wheel, timeout=10)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == len(whole) and head.content == b""
    part = requests.get(wheel, headers={"Range": "bytes=100-1099"}, timeout=10)
    assert part.status_code == 206
    assert part.content == whole[100:1100]
    assert part.headers["Content-Range"] == f"bytes 100-1099/{len(whole)}"
    tail = requests.get(wheel, headers={"Range": "bytes=-22"}, timeout=10)  # how uv reads a zip's end
    assert tail.status_code == 206 and tail.content == whole[-22:]
    assert requests.get(wheel, headers={"Range": f"bytes={len(whole)}-"}, timeout=10).status_code == 416
    assert requests.get(wheel, headers={"If-None-Match": head.headers["ETag"]}, timeout=10).status_code == 304


def test_a_head_answer_has_no_body_whatever_its_status(served: tuple[Index, DemandRecorder]) -> None:
    """HEAD answers (406, 404, 301, 200) carry no body: on one keep-alive connection, each next
    answer starts right after the previous one's headers."""
    index, _ = served
    asked = [
        ("/simple/lib/", "Accept: image/png\r\n", 406),
        ("/simple/no-such-project/", "", 404),
        ("/simple/Lib/", "", 301),
        ("/packages/no-such-file.whl", "", 404),
        ("/simple/lib/", "", 200),
    ]
    received = b""
    with socket.create_connection(("127.0.0.1", index.port), timeout=10) as conn:
        for path, extra, status in asked:
            conn.sendall(f"HEAD {path} HTTP/1.1\r\nHost: index\r\n{extra}\r\n".encode())
            while b"\r\n\r\n" not in received:
                received += conn.recv(65536)
            head, _, received = received.partition(b"\r\n\r\n")
            assert head.split(b" ", 2)[1] == str(status).encode(), (path, head)
        conn.sendall(b"GET /simple/ HTTP/1.1\r\nHost: index\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n")
        received += b"".join(iter(lambda: conn.recv(65536), b""))
    assert received.startswith(b"HTTP/1.1 200 ") and b"<!DOCTYPE html>" in received


def test_names_are_normalised_and_a_missing_project_is_404(served: tuple[Index, DemandRecorder]) -> None:
    index, _ = served
    for path in ("/simple/Other_Project/", "/simple/other.project/", "/simple/other-project"):
        response = requests.get(index.url + path, allow_redirects=False, timeout=10)
        assert response.status_code == 301, path
        assert response.headers["Location"].endswith("/simple/other-project/")
    assert requests.get(index.url + "/simple/Other_Project/", timeout=10).url.endswith("/simple/other-project/")
    missing = requests.get(index.url + "/simple/not-here/", allow_redirects=False, timeout=10)
    assert missing.status_code == 404  # never a redirect to another index
    assert requests.get(index.url + "/packages/.hidden", timeout=10).status_code == 404
    assert requests.get(index.url + "/packages/../site/simple/index.html", timeout=10).status_code == 404


def _reports(api: DemandRecorder, path: str, agent: str) -> int:
    """How many requests of ``path`` by ``agent`` the reports that reached the API count."""
    total = 0
    for seen, ua in api.seen:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(seen).query)
        if seen.startswith("/api/index-requests?") and query.get("path") == [path] and ua == agent:
            total += int(query.get("count", ["1"])[0])
    return total


def test_project_page_requests_are_reported_to_the_api(served: tuple[Index, DemandRecorder]) -> None:
    index, api = served
    agent = 'pip/25.0 {"implementation":{"name":"CPython"},"python":"3.12.1"}'
    for path in ("/simple/lib/", "/simple/not-here/"):
        requests.get(index.url + path, headers={"User-Agent": agent}, timeout=10)
        wait_until(lambda path=path: _reports(api, path, agent) == 1, 10, f"the report of {path}")
    # Many requests of one page: the embedded server reports them counted (one report a second),
    # nginx one by one; the API is told of every one.
    busy = agent.replace("3.12.1", "3.12.2")
    with requests.Session() as session:
        for _ in range(25):
            session.get(index.url + "/simple/lib/", headers={"User-Agent": busy}, timeout=10)
    wait_until(lambda: _reports(api, "/simple/lib/", busy) == 25, 10, "25 requests reported")
    assert not any("path=%2Fsimple%2F&" in p or p.endswith("path=%2Fsimple%2F") for p, _ in api.seen)


def _uv() -> str:
    from uv import find_uv_bin

    return str(find_uv_bin())


def test_uv_and_pip_resolve_from_the_metadata_files_alone(served: tuple[Index, DemandRecorder], tmp_path: Path) -> None:
    index, _ = served
    simple = index.url + "/simple/"
    before = len(access_log(index))
    env = isolated_pip_env(UV_CACHE_DIR=str(tmp_path / "uv-cache"))
    (tmp_path / "req.in").write_text("app\n")
    compiled = subprocess.run(
        [_uv(), "pip", "compile", "--index-url", simple, "--python", sys.executable, "--python-version", "3.12",
         "--no-cache", "req.in"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert compiled.returncode == 0, compiled.stderr
    assert "lib==2.0" in compiled.stdout and "app==1.0" in compiled.stdout
    report = tmp_path / "report.json"
    dry = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-cache-dir", "--ignore-installed",
         "--index-url", simple, "--report", str(report), "app"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    assert {i["metadata"]["name"] for i in json.loads(report.read_text())["install"]} == {"app", "lib"}

    def logged() -> str | None:
        log = access_log(index)[before:]
        return log if log.count(".whl.metadata") >= 4 else None

    log = wait_until(logged, 10, "the metadata requests in the access log")
    assert wheel_bodies_fetched(log) == [], log


def test_pip_installs_and_downloads_from_the_static_pages(served: tuple[Index, DemandRecorder], tmp_path: Path) -> None:
    index, _ = served
    simple = index.url + "/simple/"
    env = isolated_pip_env()
    target = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--index-url", simple,
         "--target", str(target), "app"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (target / "lib" / "__init__.py").read_text() == "VALUE = '2.0'\n"
    download = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-cache-dir", "--no-deps", "--index-url", simple,
         "-d", str(tmp_path / "dl"), "lib==1.0"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert download.returncode == 0, download.stderr
    assert (tmp_path / "dl" / "lib-1.0-py3-none-any.whl").read_bytes() == (
        index.data_dir / "wheels" / "lib-1.0-py3-none-any.whl"
    ).read_bytes()
