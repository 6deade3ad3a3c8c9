"""Listing builds (GET /api/builds) from the store's indexes, on the real Redis.

The filters see every record, not the newest 2000 the list used to read; a status change
moves a record between status filters; a discarded record leaves every listing.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from packaging.utils import canonicalize_name

from builder.config import load_settings
from builder.record_listing import Position
from builder.records import (
    ALL_BUILDS,
    PREFIX,
    STATUSES,
    WORKERS,
    BuildRecord,
    BuildStore,
)
from server.api import create_app
from server.service import count_builds, find_builds, shown_status
from tests.conftest import REDIS_SERVER, RedisDatabases

T0 = 1_700_000_000.0
SERVED_QUEUE = "wheelyard.cp312-manylinux_x86_64"
UNSERVED_QUEUE = "wheelyard.cp311-musllinux_aarch64"


@pytest.fixture
def private_db() -> Iterator[str]:
    with RedisDatabases(REDIS_SERVER) as databases:
        yield databases.take()


@pytest.fixture
def store(private_db: str) -> BuildStore:
    return BuildStore(redis.Redis.from_url(private_db))


@pytest.fixture
def client(private_db: str, tmp_path: Path) -> TestClient:
    def send(build_id: str, queue: str) -> None:
        raise AssertionError("listing sends nothing")

    settings = load_settings({"WHEELYARD_DATA_DIR": str(tmp_path)})
    return TestClient(create_app(settings, private_db, send=send))


def record(n: int, *, created_at: float | None = None, **fields: Any) -> BuildRecord:
    values: dict[str, Any] = {
        "name": "filler",
        "version": f"1.{n}",
        "target": "cp312-manylinux_x86_64",
        "queue": SERVED_QUEUE,
        "status": "published",
    }
    values.update(fields)
    return BuildRecord(
        id=f"b{n:05d}",
        requirement=f"{values['name']}=={values['version']}",
        created_at=T0 + n if created_at is None else created_at,
        **values,
    )


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [b["id"] for b in response.json()["builds"]]


def listed(client: TestClient, **params: Any) -> list[str]:
    return ids(client.get("/api/builds", params=params))


def every_page(client: TestClient, **params: Any) -> list[str]:
    """Ids of every page of a listing, following ``next``."""
    out: list[str] = []
    cursor = None
    while True:
        body = client.get("/api/builds", params={**params, **({"cursor": cursor} if cursor else {})})
        assert body.status_code == 200, body.text
        out += [b["id"] for b in body.json()["builds"]]
        cursor = body.json()["next"]
        if cursor is None:
            return out


def test_filters_see_records_beyond_the_old_2000_cap(store: BuildStore, client: TestClient) -> None:
    # The oldest records are the ones a filter must find: 2500 newer ones hide them from a scan of 2000.
    old = [
        record(0, name="Old.Package", status="failed"),
        record(1, name="old-package", target="cp311-manylinux_x86_64", status="published"),
        record(2, name="old_package", status="queued", queue=UNSERVED_QUEUE),
    ]
    for r in old:
        store.save(r)
    for n in range(3, 2503):
        store.save(record(n, status="failed" if n % 500 == 0 else "published"))
    assert store.count() == 2503

    assert listed(client, name="OLD.package") == ["b00002", "b00001", "b00000"]
    assert listed(client, name="old-package", status="failed") == ["b00000"]
    assert listed(client, name="old-package", target="cp311-manylinux_x86_64") == ["b00001"]
    assert listed(client, status="waiting-for-worker") == ["b00002"]
    assert listed(client, status="failed") == ["b02500", "b02000", "b01500", "b01000", "b00500", "b00000"]
    assert listed(client, target="cp311-manylinux_x86_64") == ["b00001"]
    assert listed(client, name="no-such-project") == []
    # No filter: the newest first, as before; total counts every build.
    body = client.get("/api/builds", params={"limit": 3}).json()
    assert [b["id"] for b in body["builds"]] == ["b02502", "b02501", "b02500"]
    assert body["total"] == 2503
    assert body["next"] is not None

    # Pages follow one another without a gap or a repeat, to the oldest record.
    assert every_page(client, name="filler", status="published", limit=500) == [
        f"b{n:05d}" for n in range(2502, 2, -1) if n % 500
    ]


def test_a_status_change_moves_a_record_between_status_filters(store: BuildStore, client: TestClient) -> None:
    store.register_worker("w1", {"queues": [SERVED_QUEUE]})
    store.save(record(1, status="queued"))
    store.save(record(2, status="queued", queue=UNSERVED_QUEUE))

    def where(build_id: str) -> list[str]:
        return [s for s in STATUSES if build_id in listed(client, status=s)]

    assert where("b00001") == ["queued"]
    assert where("b00002") == ["waiting-for-worker"]

    store.update("b00001", status="building", step="building the wheel")
    assert where("b00001") == ["building"]
    store.update("b00001", status="failed")
    assert where("b00001") == ["failed"]
    store.update("b00001", status="queued", step="waiting to retry")
    assert where("b00001") == ["queued"]
    store.unregister_worker("w1")  # no live worker serves its queue any more
    assert where("b00001") == ["waiting-for-worker"]
    assert listed(client, status="queued") == []

    # save() of a whole record moves it as update() does.
    moved = store.get("b00002")
    assert moved is not None
    moved.status = "mirrored"
    store.save(moved)
    assert where("b00002") == ["mirrored"]
    assert _indexes_holding(store, "b00002") == {
        ALL_BUILDS,
        f"{PREFIX}idx:status:mirrored",
        f"{PREFIX}idx:name:filler",
        f"{PREFIX}idx:target:cp312-manylinux_x86_64",
    }


def test_discard_removes_a_record_from_every_listing(store: BuildStore, client: TestClient) -> None:
    store.register_worker("w1", {"queues": [SERVED_QUEUE]})
    kept = store.create(
        name="markupsafe",
        version="3.0.2",
        target="cp312-manylinux_x86_64",
        requirement="markupsafe==3.0.2",
        from_source=True,
        queue=SERVED_QUEUE,
    )
    gone = store.create(
        name="markupsafe",
        version="3.0.1",
        target="cp312-manylinux_x86_64",
        requirement="markupsafe==3.0.1",
        from_source=True,
        queue=SERVED_QUEUE,
    )
    assert listed(client, name="markupsafe", status="queued") == [gone.id, kept.id]

    store.discard(gone)
    for params in (
        {},
        {"name": "markupsafe"},
        {"status": "queued"},
        {"target": "cp312-manylinux_x86_64"},
        {"name": "MarkupSafe", "status": "queued", "target": "cp312-manylinux_x86_64"},
    ):
        assert listed(client, **params) == [kept.id], params
    assert _indexes_holding(store, gone.id) == set()
    assert store.for_key(gone.key) is None
    assert store.count() == 1


def test_a_cursor_that_is_not_one_is_refused(store: BuildStore, client: TestClient) -> None:
    store.save(record(1))
    for cursor in ("nope", "1.5", "nan:b00001", "inf:x", ":b1", "1.5:b/1"):
        response = client.get("/api/builds", params={"cursor": cursor})
        assert response.status_code == 422, cursor
        assert response.json()["error"] == "invalid-request"
        assert response.json()["hint"]
    # Any cursor of the spec's form is one: one too large for a float is before the newest build.
    assert listed(client, cursor="9" * 100 + "e999:b1") == ["b00001"]
    assert listed(client, cursor="-9e999:b1") == []
    assert listed(client, cursor=f"{T0 + 2!r}:b00001") == ["b00001"]
    assert listed(client, cursor=f"{T0 + 1!r}:b00001") == []
    for token in ("1e+400:x", "-1e400:x"):
        assert Position.parse(token).created_at in (math.inf, -math.inf)
    for token in ("nan:x", "1.5", "1.5:", "x:y"):
        with pytest.raises(ValueError):
            Position.parse(token)


def test_every_filter_and_page_agrees_with_filtering_all_records(store: BuildStore) -> None:
    """Random records (with timestamps shared by several, so ties are paged through) against
    a plain filter over all of them, for every combination of filters and a few page sizes."""
    rng = random.Random(20240611)
    names = ["alpha", "Beta_Pkg", "gamma"]
    targets = ["cp312-manylinux_x86_64", "cp311-manylinux_x86_64", "py3-none-any"]
    stored_statuses = ["queued", "building", "published", "mirrored", "failed"]
    queues = [SERVED_QUEUE, UNSERVED_QUEUE, "wheelyard.mirror"]
    everything = []
    for n in range(400):
        r = record(
            n,
            created_at=T0 + rng.randrange(150),  # about three records per instant
            name=rng.choice(names),
            target=rng.choice(targets),
            status=rng.choice(stored_statuses),
            queue=rng.choice(queues),
        )
        store.save(r)
        everything.append(r)
    served = {SERVED_QUEUE: ["w1"], "wheelyard.mirror": ["w2"]}
    newest_first = sorted(everything, key=lambda r: (r.created_at, r.id), reverse=True)

    for status in (None, *STATUSES):
        for name in (None, "beta-pkg", "ALPHA", "nothing"):
            for target in (None, *targets):
                expected = [
                    r.id
                    for r in newest_first
                    if (status is None or shown_status(r, served) == status)
                    and (name is None or canonicalize_name(r.name) == canonicalize_name(name))
                    and (target is None or r.target == target)
                ]
                for limit in (1, 7, 100):
                    got: list[str] = []
                    after: Position | None = None
                    while True:
                        page, after = find_builds(
                            store, served, name=name, status=status, target=target, limit=limit, after=after
                        )
                        assert len(page) <= limit
                        got += [r.id for r in page]
                        if after is None:
                            break
                        after = Position.parse(after.token())
                    assert got == expected, (status, name, target, limit)


def _indexes_holding(store: BuildStore, build_id: str) -> set[str]:
    keys = [k.decode() for k in store.redis.scan_iter(f"{PREFIX}idx:*") if store.redis.type(k) == b"zset"]
    keys.append(ALL_BUILDS)
    return {k for k in keys if store.redis.zscore(k, build_id) is not None}


def test_workers_are_listed_from_their_registry_without_a_scan(store: BuildStore, client: TestClient) -> None:
    store.register_worker("w1", {"queues": [SERVED_QUEUE]})
    store.register_worker("w2", {"queues": [UNSERVED_QUEUE, SERVED_QUEUE]})
    assert store.served_queues() == {SERVED_QUEUE: ["w1", "w2"], UNSERVED_QUEUE: ["w2"]}
    assert sorted(client.get("/api/workers").json()["workers"]) == ["w1", "w2"]

    store.redis.delete(f"{PREFIX}worker:w2")  # its registration expired (no heartbeat for WORKER_TTL)
    assert store.served_queues() == {SERVED_QUEUE: ["w1"]}
    assert store.redis.smembers(WORKERS) == {b"w1"}  # and the registry forgot it
    store.register_worker("w2", {"queues": [UNSERVED_QUEUE]})  # until it comes back
    assert store.served_queues() == {SERVED_QUEUE: ["w1"], UNSERVED_QUEUE: ["w2"]}
    store.unregister_worker("w1")
    assert store.served_queues() == {UNSERVED_QUEUE: ["w2"]}
    assert store.redis.smembers(WORKERS) == {b"w2"}


# -- counts by status (GET /api/builds/summary) ------------------------------------------------


def summary(client: TestClient) -> dict[str, Any]:
    response = client.get("/api/builds/summary")
    assert response.status_code == 200, response.text
    body = dict(response.json())
    assert set(body) == {"total", "counts"} and set(body["counts"]) == set(STATUSES), body
    assert sum(body["counts"].values()) == body["total"], body
    return body


def test_the_summary_counts_every_build_by_the_status_the_api_shows(store: BuildStore, client: TestClient) -> None:
    assert summary(client) == {"total": 0, "counts": dict.fromkeys(STATUSES, 0)}
    # The oldest ones are those a count over the newest 500 builds (the dashboard's, once) missed.
    store.save(record(0, status="queued", queue=SERVED_QUEUE))
    store.save(record(1, status="queued", queue=UNSERVED_QUEUE))
    store.save(record(2, status="queued", queue=UNSERVED_QUEUE))
    store.save(record(3, status="queued", queue="wheelyard.mirror"))
    store.save(record(4, status="building"))
    for n in range(5, 12):
        store.save(record(n, status="failed"))
    store.save(record(12, status="mirrored"))
    for n in range(13, 713):
        store.save(record(n, status="published"))

    # No live worker: every queued build waits for one.
    expected = {"queued": 0, "waiting-for-worker": 4, "building": 1, "published": 700, "mirrored": 1, "failed": 7}
    expected["waiting-for-capability"] = 0
    assert summary(client) == {"total": 713, "counts": expected}

    store.register_worker("w1", {"queues": [SERVED_QUEUE]})
    expected |= {"queued": 1, "waiting-for-worker": 3}
    assert summary(client)["counts"] == expected
    store.register_worker("w2", {"queues": ["wheelyard.mirror", SERVED_QUEUE]})  # two workers, one queue
    expected |= {"queued": 2, "waiting-for-worker": 2}
    assert summary(client)["counts"] == expected

    # The counts follow the records: a build starts, a queued one is discarded, a worker leaves.
    store.update("b00000", status="building")
    expected |= {"queued": 1, "building": 2}
    assert summary(client)["counts"] == expected
    gone = store.get("b00001")
    assert gone is not None
    store.discard(gone)
    expected |= {"waiting-for-worker": 1}
    assert summary(client) == {"total": 712, "counts": expected}
    store.unregister_worker("w2")
    expected |= {"queued": 0, "waiting-for-worker": 2}
    assert summary(client)["counts"] == expected

    # And they are what filtering every build by each status finds.
    for status, n in summary(client)["counts"].items():
        assert len(every_page(client, status=status, limit=500)) == n, status
    assert client.get("/api/builds", params={"limit": 1}).json()["total"] == 712


def test_the_summary_agrees_with_the_shown_status_of_every_record(store: BuildStore) -> None:
    rng = random.Random(7)
    queues = [SERVED_QUEUE, UNSERVED_QUEUE, "wheelyard.mirror", ""]
    everything = []
    for n in range(300):
        r = record(n, status=rng.choice(["queued", "building", "published", "mirrored", "failed"]))
        r.queue = rng.choice(queues)
        store.save(r)
        everything.append(r)
    for served in ({}, {SERVED_QUEUE: ["w1"]}, {SERVED_QUEUE: ["w1"], "": ["w2"], "wheelyard.mirror": ["w1", "w3"]}):
        counts = count_builds(store, served)
        assert counts.total == len(everything)
        assert counts.by_status == {s: sum(shown_status(r, served) == s for r in everything) for s in STATUSES}


def test_the_summary_is_not_taken_for_a_build(store: BuildStore, client: TestClient) -> None:
    for r in (record(1, status="failed"), record(2, status="queued", queue=UNSERVED_QUEUE), record(3)):
        store.save(r)
    counts = summary(client)["counts"]
    assert counts == dict.fromkeys(STATUSES, 0) | {"waiting-for-worker": 1, "published": 1, "failed": 1}

    # "summary" is a route of its own, not the id of a build; builds and their logs are where they were.
    assert client.get("/api/builds/b00001").json()["status"] == "failed"
    missing = client.get("/api/builds/summary/log")
    assert missing.status_code == 404 and missing.json()["error"] == "build-not-found"
    assert client.post("/api/builds/summary").status_code == 405
