"""What the index's tests share: wheels with real metadata, a running index per static server,
page parsing, the access log, and a stand-in for the API's demand endpoint."""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import http.server
import io
import re
import threading
import zipfile
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import requests

from tests.test_index import PASSWORD, USER, Index

SERVERS = ["embedded", "nginx"]
WHEEL_FILE = b"Wheel-Version: 1.0\nGenerator: wheelyard-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"


def dist_wheel(
    directory: Path,
    name: str,
    version: str,
    *,
    requires_python: str | None = None,
    requires: tuple[str, ...] = (),
    payload: bytes = b"",
    compression: int = zipfile.ZIP_DEFLATED,
) -> Path:
    """A valid pure-Python wheel with the METADATA fields a resolver reads (bench/index_corpus.py
    makes its corpus with it too, stored: a random payload does not compress)."""
    module = re.sub(r"[-_.]+", "_", name).lower()
    dist_info = f"{module}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    if requires_python:
        metadata += f"Requires-Python: {requires_python}\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    members = {
        f"{module}/__init__.py": f"VALUE = {version!r}\n".encode(),
        f"{module}/payload.bin": payload,
        f"{dist_info}/METADATA": metadata.encode(),
        f"{dist_info}/WHEEL": WHEEL_FILE,
    }
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for path, data in members.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        writer.writerow([path, f"sha256={digest}", str(len(data))])
    writer.writerow([f"{dist_info}/RECORD", "", ""])
    members[f"{dist_info}/RECORD"] = out.getvalue().encode()
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", compression) as zf:
        for path, data in members.items():
            zf.writestr(path, data)
    return wheel


def upload_file(index: Index, path: Path) -> requests.Response:
    return requests.post(
        index.url + "/",
        data={":action": "file_upload", "protocol_version": "1"},
        files={"content": (path.name, path.read_bytes(), "application/octet-stream")},
        auth=(USER, PASSWORD),
        timeout=60,
    )


class Links(HTMLParser):
    """Every <a> of a page with its attributes, and the meta tags."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[dict[str, str | None]] = []
        self.meta: dict[str, str | None] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links.append(dict(attrs))
        elif tag == "meta":
            values = dict(attrs)
            self.meta[str(values.get("name"))] = values.get("content")


def parse_links(page: str) -> Links:
    parser = Links()
    parser.feed(page)
    return parser


def access_log(index: Index) -> str:
    path = index.data_dir / "logs" / "index-access.log"
    return path.read_text(errors="replace") if path.exists() else ""


def wheel_bodies_fetched(log: str) -> list[str]:
    """Requests for a wheel itself (not its .metadata) in either server's access log."""
    return re.findall(r"(?:GET|HEAD) (/packages/[^ \"?]+\.whl)[ \"?]", log)


class DemandRecorder(http.server.ThreadingHTTPServer):
    """Stands in for the API's demand endpoint (another part of wheelyard): records what arrives."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []
        self.tokens: list[str | None] = []  # the Authorization header of each report
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                recorder.seen.append((self.path, self.headers.get("User-Agent")))
                recorder.tokens.append(self.headers.get("Authorization"))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                return

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@contextlib.contextmanager
def demand_recorder() -> Iterator[DemandRecorder]:
    server = DemandRecorder()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
