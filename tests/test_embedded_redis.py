"""EmbeddedRedis with the real redis-server, redis-py, kombu and Celery."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import kombu
import pytest
import redis
from celery import Celery

from builder.errors import RedisUnavailable
from server.embedded_redis import EmbeddedRedis

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")


def port_6379_open() -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", 6379)) == 0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_starts_on_a_unix_socket_without_tcp(tmp_path: Path) -> None:
    before = port_6379_open()
    with EmbeddedRedis(tmp_path) as server:
        assert server.url == f"unix://{tmp_path}/redis/redis.sock?db=0"
        assert server.socket_path.is_socket()
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        assert client.config_get("port") == {"port": "0"}
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("save") == {"save": ""}
        assert port_6379_open() == before
        client.close()
    assert port_6379_open() == before


def test_kombu_and_celery_accept_the_broker_url(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path) as server:
        assert server.broker_url == f"redis+socket://{tmp_path}/redis/redis.sock"
        with kombu.Connection(server.broker_url) as connection:
            connection.ensure_connection(max_retries=3)
            queue = connection.SimpleQueue("wheelyard-test")
            queue.put({"build": "tinypkg"})
            message = queue.get(timeout=5)
            assert message.payload == {"build": "tinypkg"}
            message.ack()
            queue.close()

        app = Celery("wheelyard-test", broker=server.broker_url, backend=server.broker_url)
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=3)
        assert app.backend.client.ping()
        app.backend.set("result-key", b"stored")
        assert app.backend.get("result-key") == b"stored"


def test_data_survives_a_restart(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path) as server:
        redis.Redis.from_url(server.url).set("accepted", "request-1")
        with kombu.Connection(server.broker_url) as connection:
            connection.SimpleQueue("builds").put({"request": 1})
    with EmbeddedRedis(tmp_path) as server:
        assert redis.Redis.from_url(server.url).get("accepted") == b"request-1"
        with kombu.Connection(server.broker_url) as connection:
            queue = connection.SimpleQueue("builds")
            message = queue.get(timeout=5)
            assert message.payload == {"request": 1}
            message.ack()
            queue.close()
    assert (tmp_path / "redis" / "appendonlydir").is_dir()


def test_stops_on_exit(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path) as server:
        pid = server.pid
        assert pid is not None and pid_alive(pid)
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        client.close()
    assert not pid_alive(pid)
    assert not server.running
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(server.url, socket_connect_timeout=2).ping()


def test_stops_on_exit_after_an_error(tmp_path: Path) -> None:
    with pytest.raises(KeyError), EmbeddedRedis(tmp_path) as server:
        pid = server.pid
        raise KeyError("boom")
    assert pid is not None and not pid_alive(pid)


def test_tcp_mode_binds_a_free_loopback_port(tmp_path: Path) -> None:
    before = port_6379_open()
    with EmbeddedRedis(tmp_path, tcp=True) as server:
        assert server.port is not None and server.port != 6379
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        assert server.broker_url == server.url
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        assert client.config_get("bind") == {"bind": "127.0.0.1"}
        client.close()
        with kombu.Connection(server.broker_url) as connection:
            connection.ensure_connection(max_retries=3)
        assert port_6379_open() == before


def test_one_data_dir_runs_one_redis(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path), pytest.raises(RedisUnavailable) as info:
        EmbeddedRedis(tmp_path).start()
    assert "another embedded Redis" in info.value.message


@pytest.fixture
def path_without_redis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


@pytest.mark.usefixtures("path_without_redis")
def test_missing_redis_server_says_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(RedisUnavailable) as info:
        EmbeddedRedis(tmp_path).start()
    assert "redis-server is not on PATH" in info.value.message
    assert info.value.hint is not None
    assert "apt-get install redis-server" in info.value.hint
    assert "brew install redis" in info.value.hint


@pytest.fixture
def broken_redis_config_value(tmp_path: Path) -> Path:
    """A 'redis-server' that exits at once, as one with a bad configuration does."""
    fake = tmp_path / "bin" / "redis-server"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho '*** FATAL CONFIG FILE ERROR' >&2\nexit 1\n")
    fake.chmod(0o755)
    return fake


def test_a_server_that_dies_at_start_is_reported(tmp_path: Path, broken_redis_config_value: Path) -> None:
    with pytest.raises(RedisUnavailable) as info:
        EmbeddedRedis(tmp_path / "data", executable=str(broken_redis_config_value)).start()
    assert "exited with status 1" in info.value.message
    assert "FATAL CONFIG FILE ERROR" in info.value.message
