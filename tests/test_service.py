"""Accepting requests when the queue cannot take them: nothing is half-accepted."""

from __future__ import annotations

import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import kombu.exceptions
import pytest
import redis
from fastapi.testclient import TestClient

from builder.config import load_settings
from builder.records import BuildStore
from server.api import create_app
from tests.conftest import REDIS_SERVER, RedisDatabases


@pytest.fixture
def private_db() -> Any:
    with RedisDatabases(REDIS_SERVER) as databases:
        yield databases.take()


def test_a_request_the_queue_refuses_answers_503_and_leaves_no_build(private_db: str, tmp_path: Any) -> None:
    sent: list[tuple[str, str]] = []
    broken = True

    def send(build_id: str, queue: str) -> None:
        if broken:
            raise kombu.exceptions.OperationalError("Error 111 connecting to the broker")
        sent.append((build_id, queue))

    # An index that holds nothing (a plain directory server): markupsafe is no private name there.
    empty = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(tmp_path)))
    threading.Thread(target=empty.serve_forever, daemon=True).start()
    index_url = f"http://127.0.0.1:{empty.server_address[1]}"
    settings = load_settings({"WHEELYARD_DATA_DIR": str(tmp_path), "WHEELYARD_INDEX_URL": index_url})
    client = TestClient(create_app(settings, private_db, send=send))
    body = {"requirement": "markupsafe==3.0.2", "targets": ["cp312-manylinux_x86_64"], "from_source": True}

    response = client.post("/api/builds", json=body)
    assert response.status_code == 503
    assert response.json()["error"] == "redis-unavailable"
    store = BuildStore(redis.Redis.from_url(private_db))
    assert store.count() == 0
    assert store.for_key("markupsafe==3.0.2@cp312-manylinux_x86_64") is None

    broken = False
    response = client.post("/api/builds", json=body)
    assert response.status_code == 202, response.text
    build = response.json()["builds"][0]
    assert build["created"] is True
    assert sent == [(build["id"], "wheelyard.cp312-manylinux_x86_64")]
    assert store.count() == 1
    empty.shutdown()
