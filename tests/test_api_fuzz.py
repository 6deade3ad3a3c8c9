"""The HTTP API fuzzed from its own OpenAPI spec (schemathesis), in process, on a real Redis.

Every generated request must be answered without a 5xx and without a traceback, every
4xx must carry the one JSON error shape ``{error, message, hint}``, responses must match
the spec, and a refused request must queue nothing and create no build record.

The upstream index is a stub HTTP server on 127.0.0.1, not PyPI: POST /api/builds with
generated requirements would otherwise make hundreds of calls to pypi.org, making the
test slow, flaky off-network and impolite. The stub knows one project (``markupsafe``,
the spec's own example) with an sdist, so the accepted path (202, one send per created
build) is exercised as well; every other project is a 404, as on PyPI.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import redis
import schemathesis
from schemathesis.specs.openapi.checks import positive_data_acceptance

from builder.config import Settings
from builder.targets import is_pattern
from server.api import create_app
from tests.conftest import REDIS_SERVER, RedisDatabases

KNOWN = "markupsafe"
ENSURE_CONTENT = {"invalid-ensure-input", "invalid-build-identifier", "resolution-failed"}
SDIST = "markupsafe-3.0.2.tar.gz"


class _Upstream(BaseHTTPRequestHandler):
    """A Simple API (PEP 691) that knows one project; under /index/, wheelyard's own index, empty."""

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        path = self.path.split("?", 1)[0]
        if path.startswith("/index/"):
            # wheelyard's own index, empty: it answers its health check and lists no project.
            if path in ("/index/health", "/index/simple/"):
                self._send(200, "text/html", b"<html><body></body></html>")
            else:
                self._send(404, "text/plain", b"not found")
        elif path == "/health":
            self._send(200, "text/plain", b"ok")
        elif path.rstrip("/") == f"/simple/{KNOWN}":
            body = {
                "meta": {"api-version": "1.1"},
                "name": KNOWN,
                "files": [
                    {
                        "filename": SDIST,
                        "url": f"/files/{SDIST}",
                        "hashes": {"sha256": "0" * 64},
                        "requires-python": ">=3.9",
                    }
                ],
            }
            self._send(200, "application/vnd.pypi.simple.v1+json", json.dumps(body).encode())
        else:
            self._send(404, "text/plain", b"not found")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence the access log
        pass


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class Recorder:
    """Stands in for Celery: records what would be queued."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def __call__(self, build_id: str, queue: str) -> None:
        self.sent.append((build_id, queue))


@pytest.fixture(scope="module")
def fuzzed(upstream: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with RedisDatabases(REDIS_SERVER) as databases:
        url = databases.take()  # an empty database of the test Redis, leased to this module alone
        settings = Settings(
            data_dir=Path(tmp_path_factory.mktemp("fuzz")),
            redis_url=url,
            upstream_index=f"{upstream}/simple/",
            index_url=f"{upstream}/index",
        )
        recorder = Recorder()
        app = create_app(settings, redis_url=url, send=recorder)
        client = redis.Redis.from_url(url)
        yield app, recorder, client, url
        client.close()


# The spec as the app serves it (building the app connects to nothing); the requests go to the
# app of the ``fuzzed`` fixture, on its own Redis and stub upstream.
SPEC = create_app(Settings(), redis_url="redis://127.0.0.1:1/0", send=lambda build_id, queue: None).openapi()
schema = schemathesis.openapi.from_dict(SPEC)


@pytest.mark.slow
@schema.parametrize()
@hypothesis.settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
    database=None,
)
def test_api_answers_every_generated_request_by_its_spec(case: Any, fuzzed: Any) -> None:
    app, recorder, client, _ = fuzzed
    sent_before = len(recorder.sent)
    builds_before = client.zcard("wheelyard:builds")
    started = time.monotonic()
    # Every built-in check but one: a well-formed request may still name a requirement that is not PEP 508,
    # which no JSON schema can say; that refusal is allowed below, and only that one.
    response = case.call_and_validate(app=app, excluded_checks=[positive_data_acceptance])
    assert time.monotonic() - started < 10, "one request took more than 10 s"
    text = response.text
    assert response.status_code < 500, text
    assert "Traceback" not in text and 'File "' not in text, text
    if 400 <= response.status_code < 500:
        body = response.json()
        assert set(body) == {"error", "message", "hint"}, body
        assert isinstance(body["error"], str) and body["error"], body
        assert isinstance(body["message"], str) and body["message"], body
        assert body["hint"] is None or isinstance(body["hint"], str), body
    if case.meta is not None and case.meta.generation.mode.is_positive and response.status_code in (400, 413, 422):
        # A schema-valid body is refused only for what the schema cannot say: a requirement that does
        # not parse, or a selector pattern that matches none (or too many) of cibuildwheel's identifiers.
        allowed = {"invalid-requirement"}
        if isinstance(case.body, dict) and any(is_pattern(str(t)) for t in case.body.get("targets", [])):
            allowed.add("invalid-build-identifier")
        if case.path.startswith("/api/ensure"):
            # POST /api/ensure takes file texts and build identifiers, whose content no schema can say.
            allowed |= ENSURE_CONTENT
        assert response.json()["error"] in allowed, (case.body, text)
    new_sends = recorder.sent[sent_before:]
    if response.status_code != 202:
        assert new_sends == [], (response.status_code, text, new_sends)
        assert client.zcard("wheelyard:builds") == builds_before, text
    else:
        created = [(b["id"], b["queue"]) for b in response.json()["builds"] if b["created"]]
        assert new_sends == created, (new_sends, created)


def _post(app: Any, body: Any, headers: dict[str, str] | None = None) -> Any:
    from fastapi.testclient import TestClient

    with TestClient(app, raise_server_exceptions=False) as client:
        return client.post("/api/builds", json=body, headers=headers or {})


def test_an_accepted_request_queues_exactly_the_builds_it_created(fuzzed: Any) -> None:
    app, recorder, _, _ = fuzzed
    body = {"requirement": "markupsafe==3.0.2", "targets": ["cp311-musllinux_x86_64"], "from_source": True}
    before = len(recorder.sent)
    first = _post(app, body)
    assert first.status_code == 202, first.text
    build = first.json()["builds"][0]
    assert build["created"] is True and build["status"] == "waiting-for-worker"
    assert recorder.sent[before:] == [(build["id"], "wheelyard.cp311-musllinux_x86_64")]
    again = _post(app, body)
    assert again.json()["builds"][0]["id"] == build["id"] and again.json()["builds"][0]["created"] is False
    assert len(recorder.sent) == before + 1


def test_without_the_token_nothing_is_queued(upstream: str, fuzzed: Any, tmp_path: Path) -> None:
    _, _, client, redis_url = fuzzed
    settings = Settings(
        data_dir=tmp_path, upstream_index=f"{upstream}/simple/", index_url=f"{upstream}/index", api_token="s3cret"
    )
    recorder = Recorder()
    app = create_app(settings, redis_url=redis_url, send=recorder)
    builds = client.zcard("wheelyard:builds")
    body = {"requirement": "markupsafe==3.0.2", "targets": ["cp310-win_amd64"]}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
        refused = _post(app, body, headers)
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"] == "unauthorized" and refused.json()["hint"]
    assert recorder.sent == [] and client.zcard("wheelyard:builds") == builds
    accepted = _post(app, body, {"Authorization": "Bearer s3cret"})
    assert accepted.status_code == 202, accepted.text
    assert len(recorder.sent) == 1


def test_oversize_and_unparsable_bodies_are_refused_in_the_error_shape(fuzzed: Any) -> None:
    from fastapi.testclient import TestClient

    app, recorder, _, _ = fuzzed
    before = len(recorder.sent)
    huge = b'{"requirement": "' + b"x" * 200_000 + b'", "targets": ["py3-none-any"]}'

    def streamed() -> Iterator[bytes]:  # no Content-Length: the limit applies as the body streams in
        for start in range(0, len(huge), 8192):
            yield huge[start : start + 8192]

    deep = b"[" * 20_000 + b"]" * 20_000
    with TestClient(app, raise_server_exceptions=False) as client:
        json_type = {"Content-Type": "application/json"}
        cases = [
            (client.post("/api/builds", content=huge, headers=json_type), 413, "request-too-large"),
            (client.post("/api/builds", content=streamed(), headers=json_type), 413, "request-too-large"),
            (client.post("/api/builds", content=deep, headers=json_type), 400, "invalid-request"),
            (client.post("/api/builds", content=b"{nope", headers=json_type), 422, "invalid-request"),
            (client.request("DELETE", "/api/builds"), 405, "method-not-allowed"),
        ]
        for response, status, reference in cases:
            assert response.status_code == status, response.text
            assert response.json()["error"] == reference, response.text
            assert set(response.json()) == {"error", "message", "hint"}
        assert set(cases[-1][0].headers["allow"].replace(" ", "").split(",")) == {"GET", "POST"}
    assert len(recorder.sent) == before
