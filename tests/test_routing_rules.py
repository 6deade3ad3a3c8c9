"""Routing decisions on the real Redis (builder/routing.py), without Celery workers: the jobs a
decision sends are collected here instead of put in a queue. tests/test_routing.py runs the same
paths with two real workers and a real Fortran build."""

from __future__ import annotations

import io
from typing import Any

import pytest
import redis

from builder.records import BuildRecord, BuildStore
from builder.routing import WAITING, WaitingBuilds, capable_worker, direct_queue, route_failure, send_routed
from builder.worker import LostBuilds

TARGET = "cp313-manylinux_x86_64"
QUEUE = f"wheelyard.{TARGET}"
GCC = ["tool:cc", "tool:gcc", "tool:gcc==12.2.0"]
FORTRAN = [*GCC, "tool:fortran", "tool:gfortran"]


@pytest.fixture
def store(redis_url: str) -> BuildStore:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    return BuildStore(client)


class Sent(list[tuple[str, str, int]]):
    def __call__(self, build_id: str, queue: str, recovery: int) -> None:
        self.append((build_id, queue, recovery))


def failed_for(capability: str) -> dict[str, Any]:
    diagnosis = {"primary": {"category": "missing-fortran", "rule": "fortran-missing", "capability": capability}}
    return {
        "status": "failed",
        "step": None,
        "finished_at": 1.0,
        "error": {"error": "build-failed"},
        "diagnosis": diagnosis,
    }


def register(store: BuildStore, name: str, capabilities: list[str], targets: tuple[str, ...] = (TARGET,)) -> None:
    queues = [f"wheelyard.{t}" for t in targets] + [direct_queue(name)]
    store.register_worker(name, {"queues": queues, "targets": list(targets), "capabilities": capabilities})


def building(store: BuildStore, worker: str) -> BuildRecord:
    record = store.create(
        name="demo", version="1.0", target=TARGET, requirement="demo==1.0", from_source=True, queue=QUEUE
    )
    return store.update(record.id, status="building", worker=worker)


def test_a_failure_for_what_a_live_worker_has_goes_to_that_worker(store: BuildStore) -> None:
    register(store, "plain@a", GCC)
    register(store, "other-target@b", FORTRAN, targets=("cp312-manylinux_x86_64",))
    register(store, "fortran@c", FORTRAN)
    record = building(store, "plain@a")
    route = route_failure(
        store, record, failed_for("tool:fortran"), worker_name="plain@a", have=GCC, probed_tools=["gcc"]
    )
    assert route.worker == "fortran@c" and route.queue == "fortran@c.dq2"
    assert route.changes["status"] == "queued" and route.changes["queue"] == "fortran@c.dq2"
    assert route.changes["missing_capability"] == "tool:fortran" and route.changes["recoveries"] == 1
    written = store.update(record.id, **route.changes)
    sent = Sent()
    send_routed(store, written, "fortran@c.dq2", sent)
    assert sent == [(record.id, "fortran@c.dq2", 1)]


def test_a_failure_for_what_no_worker_has_waits_and_a_capable_worker_claims_it(store: BuildStore) -> None:
    register(store, "plain@a", GCC)
    record = building(store, "plain@a")
    route = route_failure(store, record, failed_for("tool:fortran"), worker_name="plain@a", have=GCC, probed_tools=[])
    assert route.queue is None and route.changes["status"] == WAITING and route.changes["queue"] == QUEUE
    store.update(record.id, **route.changes)
    assert [r.id for r in store.find([[f"wheelyard:idx:status:{WAITING}"]])[0]] == [record.id]

    # A worker without it, or of another target, leaves it waiting.
    sent = Sent()
    assert WaitingBuilds(store, "plain@a", [TARGET], GCC, sent).check() == []
    assert WaitingBuilds(store, "f312@d", ["cp312-manylinux_x86_64"], FORTRAN, sent).check() == []
    # Two capable workers check at once: one of them claims it, once.
    register(store, "fortran@c", FORTRAN)
    register(store, "fortran@e", FORTRAN)
    first = WaitingBuilds(store, "fortran@c", [TARGET], FORTRAN, sent)
    second = WaitingBuilds(store, "fortran@e", [TARGET], FORTRAN, sent)
    assert first.check() == [record.id] and second.check() == []
    assert sent == [(record.id, "fortran@c.dq2", 1)]
    claimed = store.get(record.id)
    assert claimed is not None and claimed.status == "queued" and claimed.queue == "fortran@c.dq2"


def test_what_this_worker_has_or_no_worker_can_have_is_an_ordinary_failure(store: BuildStore) -> None:
    register(store, "fortran@c", FORTRAN)
    record = building(store, "fortran@c")
    for capability, have in (("tool:fortran", FORTRAN), ("mem:more", GCC), ("tool:setuptools<58", GCC), ("", GCC)):
        changes = failed_for(capability)
        assert route_failure(store, record, changes, worker_name="x", have=have, probed_tools=[]).changes is changes
    published = {"status": "published", "diagnosis": None}
    assert route_failure(store, record, published, worker_name="x", have=GCC, probed_tools=[]).changes is published


def test_the_capabilities_a_build_needs_only_grow(store: BuildStore) -> None:
    """Routed for fortran, it then fails for a library: it needs a worker with both."""
    register(store, "fortran@c", FORTRAN)
    register(store, "blas@f", [*GCC, "lib:blas"])
    record = building(store, "fortran@c")
    record = store.update(record.id, required_capabilities=["tool:fortran"])
    route = route_failure(store, record, failed_for("lib:blas"), worker_name="fortran@c", have=FORTRAN, probed_tools=[])
    assert route.changes["status"] == WAITING and route.changes["required_capabilities"] == ["lib:blas", "tool:fortran"]
    register(store, "both@g", [*FORTRAN, "lib:blas"])
    assert capable_worker(store.workers(), TARGET, ["lib:blas", "tool:fortran"]) == "both@g"


def test_a_build_routed_to_a_worker_that_is_gone_waits_again(store: BuildStore) -> None:
    register(store, "fortran@c", FORTRAN)
    queued = store.create(
        name="demo", version="2.0", target=TARGET, requirement="demo==2.0", from_source=True, queue=QUEUE
    )
    queued = store.update(queued.id, status="queued", queue="gone@x.dq2", missing_capability="tool:fortran")
    store.update(queued.id, required_capabilities=["tool:fortran"])
    store.redis.sadd("wheelyard:routed-queues", "gone@x.dq2")
    sent = Sent()
    # Its queue's worker is not registered: it waits again, and the capable worker's check takes it.
    assert WaitingBuilds(store, "fortran@c", [TARGET], FORTRAN, sent).check() == [queued.id]
    assert sent == [(queued.id, "fortran@c.dq2", 2)]

    # Lost while it built: it waits again instead of going back to the lost worker's queue.
    running = building(store, "fortran@c")
    store.update(running.id, required_capabilities=["tool:fortran"], missing_capability="tool:fortran")
    store.unregister_worker("fortran@c")
    lost = LostBuilds(store, Sent())
    recovered = store.get(running.id)
    assert recovered is not None and lost.recover(recovered)
    after = store.get(running.id)
    assert after is not None and after.status == WAITING and after.worker is None and after.queue == QUEUE


def test_an_ensure_counts_a_build_waiting_for_a_capability_as_pending() -> None:
    from server.ensure.command import write_summary
    from server.ensure.report import Item, Report, progress_line

    waiting = Item("glmnet", "2.6.1", TARGET, [TARGET], WAITING, build_id="b1", missing_capability="tool:fortran")
    report = Report([TARGET], [waiting, Item("six", "1.16.0", "py3-none-any", [TARGET], "present")])
    assert not report.done and not report.ok and report.counts()[WAITING] == 1
    assert "1 waiting for a capability" in progress_line(report.to_dict())
    out = io.StringIO()
    write_summary(report.to_dict(), out)
    assert f"PENDING glmnet==2.6.1 for {TARGET}: {WAITING} (tool:fortran)" in out.getvalue()
