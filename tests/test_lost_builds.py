"""Builds whose worker is gone, on the real Redis: recovered once however many workers look,
never while their worker lives, and ``retry`` makes a new attempt of one.

The whole path (a real worker killed with SIGKILL, another recovering its build) is in
tests/test_build_limits.py; these check the decisions on records as a dead worker leaves them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from builder.records import BuildRecord, BuildStore, connect
from builder.upstream import SimpleIndex
from builder.worker import LostBuilds
from server.service import BuildService
from tests.conftest import REDIS_SERVER, RedisDatabases, make_sdist

QUEUE = "wheelyard.py3-none-any"


@pytest.fixture
def store() -> Iterator[BuildStore]:
    with RedisDatabases(REDIS_SERVER) as databases:
        client = connect(databases.take())
        yield BuildStore(client)
        client.close()


def building(store: BuildStore, name: str, worker: str, started_at: float | None = None) -> BuildRecord:
    record = store.create(
        name=name, version="1.0", target="py3-none-any", requirement=f"{name}==1.0", from_source=True, queue=QUEUE
    )
    return store.update(record.id, status="building", worker=worker, started_at=started_at or time.time(), runs=1)


def register(store: BuildStore, name: str, started_at: float) -> None:
    store.register_worker(name, {"queues": [QUEUE], "started_at": started_at}, ttl=60)


def test_a_lost_build_is_sent_again_once_however_many_workers_look(store: BuildStore) -> None:
    now = time.time()
    register(store, "alive", now - 100)
    register(store, "restarted", now)  # registered again after its build started: a new life
    lost = building(store, "lost", "dead-worker", now - 50)
    kept = building(store, "kept", "alive", now - 50)
    again = building(store, "again", "restarted", now - 50)
    sent: list[tuple[str, str, int]] = []
    checkers = [LostBuilds(store, lambda *job: sent.append(job), grace=0.0) for _ in range(3)]

    for checker in checkers:
        checker.check()
    assert sent == []  # seen lost once: not yet (a heartbeat may have failed only for a moment)
    for checker in checkers:
        checker.check()
    assert sorted(sent) == sorted([(lost.id, QUEUE, 1), (again.id, QUEUE, 1)])
    for record, status in ((lost, "queued"), (again, "queued"), (kept, "building")):
        stored = store.get(record.id)
        assert stored is not None and stored.status == status
    stored = store.get(lost.id)
    assert stored is not None and stored.recoveries == 1 and stored.worker is None


def test_a_build_whose_worker_registers_again_in_time_is_left_alone(store: BuildStore) -> None:
    now = time.time()
    record = building(store, "flaky", "flaky-worker", now - 50)
    sent: list[tuple[str, str, int]] = []
    checker = LostBuilds(store, lambda *job: sent.append(job), grace=0.0)
    checker.check()  # its heartbeat failed while Redis was away
    register(store, "flaky-worker", now - 100)  # and came back before the next check
    checker.check()
    checker.check()
    assert sent == []
    stored = store.get(record.id)
    assert stored is not None and stored.status == "building"


def test_a_failed_send_leaves_the_build_to_the_next_check(store: BuildStore) -> None:
    record = building(store, "unsent", "dead-worker")

    def broken(*job: object) -> None:
        raise redis.ConnectionError("broker away")

    checker = LostBuilds(store, broken, grace=0.0)
    checker.check()
    with pytest.raises(redis.ConnectionError):
        checker.check()
    stored = store.get(record.id)
    assert stored is not None and (stored.status, stored.worker, stored.recoveries) == ("building", "dead-worker", 0)


def test_retry_makes_a_new_attempt_of_a_dead_build_not_of_a_live_one(
    store: BuildStore, local_upstream: tuple[Path, str], tmp_path: Path
) -> None:
    packages, upstream = local_upstream
    for name in ("wheelyard-dead", "wheelyard-live"):
        make_sdist(tmp_path / "src", name, "1.0", {"setup.py": "from setuptools import setup\nsetup()\n"}, packages)
    sent: list[tuple[str, str]] = []
    service = BuildService(store, SimpleIndex(upstream), lambda build_id, queue: sent.append((build_id, queue)))
    register(store, "alive", time.time() - 100)
    dead = building(store, "wheelyard-dead", "dead-worker")
    live = building(store, "wheelyard-live", "alive")

    (same,) = service.submit("wheelyard-dead==1.0", ["py3-none-any"])
    assert (same.record.id, same.created) == (dead.id, False)  # without --retry: the build as it is
    (new,) = service.submit("wheelyard-dead==1.0", ["py3-none-any"], retry=True)
    assert new.created and new.record.id != dead.id and sent == [(new.record.id, QUEUE)]
    old = store.get(dead.id)
    assert old is not None and old.status == "failed" and (old.error or {})["error"] == "worker-lost"

    (still,) = service.submit("wheelyard-live==1.0", ["py3-none-any"], retry=True)
    assert (still.record.id, still.created) == (live.id, False)
    assert len(sent) == 1
