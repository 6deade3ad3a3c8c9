"""Prometheus metrics of a real stack: a real Redis, index, API and Celery worker process.

Every /metrics is read with prometheus_client's own text parser. Real builds run (one built
from its sdist, one mirrored from upstream, one that fails to compile and is retried on
request, one waiting for a worker no one runs) and the counters, histograms and gauges are
checked to have moved by exactly what happened.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from builder.errors import AlreadyPublished
from builder.publish import publish_wheel
from tests.conftest import Stack, free_port, wait_until
from tests.demand_clients import pip_user_agent

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    response = requests.get(url, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample's value; 0 when it is not there (a counter never incremented)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, found), v in samples.items() if n == name and wanted <= set(found))


@pytest.mark.slow
def test_metrics_of_a_real_stack_move_with_real_builds(make_stack: Any, tmp_path: Path) -> None:
    index_metrics = free_port()
    s: Stack = make_stack(db=1, WHEELYARD_INDEX_METRICS_PORT=str(index_metrics))
    s.start_index_and_api()
    s.start_worker("worker-metrics", "py3-none-any,cp312-manylinux_x86_64")
    worker_name, worker = next(iter(requests.get(f"{s.api}/api/workers", timeout=10).json()["workers"].items()))
    worker_url = worker["metrics"]
    assert worker_url.startswith("http://127.0.0.1:") and worker_url.endswith("/metrics"), worker
    # Prometheus' HTTP service discovery finds the worker's /metrics.
    discovered = requests.get(f"{s.api}/api/metrics/targets", timeout=10).json()
    assert [t["targets"] for t in discovered] == [[worker_url[len("http://") : -len("/metrics")]]]

    before = scrape(worker_url)
    assert total(before, "wheelyard_builds_total") == 0
    api = scrape(f"{s.api}/metrics")
    assert value(api, "wheelyard_workers") == 1
    assert value(api, "wheelyard_target_workers", target="cp312-manylinux_x86_64") == 1
    assert value(api, "wheelyard_redis_up") == 1

    def ask(requirement: str, target: str, **extra: Any) -> str:
        response = s.request(requirement, [target], **extra)
        assert response.status_code == 202, response.text
        return str(response.json()["builds"][0]["id"])

    built = ask("iniconfig==2.0.0", "py3-none-any", from_source=True)
    mirrored = ask("iniconfig==2.0.0", "cp312-manylinux_x86_64")
    # PyAudio needs portaudio.h, which this machine does not have: a real compiler failure, after which
    # the build waits for a worker with lib:portaudio (builder.routing); its attempt counts as failed.
    failed = ask("pyaudio==0.2.14", "cp312-manylinux_x86_64", from_source=True)
    ask("markupsafe==3.0.2", "cp310-manylinux_x86_64", from_source=True)  # no worker serves cp310
    outcomes = {build_id: s.wait_done(build_id)["status"] for build_id in (built, mirrored, failed)}
    assert outcomes == {built: "published", mirrored: "mirrored", failed: "waiting-for-capability"}
    retried = ask("pyaudio==0.2.14", "cp312-manylinux_x86_64", from_source=True, retry=True)
    assert retried != failed and s.wait_done(retried)["status"] == "waiting-for-capability"

    after = scrape(worker_url)
    cp312 = "cp312-manylinux_x86_64"
    assert value(after, "wheelyard_builds_total", outcome="published", target="py3-none-any", remedy="none") == 1
    assert (
        value(after, "wheelyard_builds_total", outcome="mirrored", target="cp312-manylinux_x86_64", remedy="none") == 1
    )
    assert value(after, "wheelyard_builds_total", outcome="failed", target="cp312-manylinux_x86_64", remedy="none") == 2
    category = s.build(failed)["diagnosis"]["primary"]["category"]
    assert category == "missing-library-header"
    assert total(after, "wheelyard_build_failures_total", category=category, target=cp312) == 2
    assert total(after, "wheelyard_build_failures_total", error="build-failed") == 2
    assert total(after, "wheelyard_build_duration_seconds_count") == 4
    assert total(after, "wheelyard_build_duration_seconds_count", outcome="failed") == 2
    assert total(after, "wheelyard_queue_wait_seconds_count") == 4
    assert value(after, "wheelyard_queue_wait_seconds_count", queue="wheelyard.mirror") == 1
    # The wheel built from iniconfig's sdist and the one mirrored have the same name: the second is kept as it is.
    assert value(after, "wheelyard_publishes_total", outcome="uploaded") == 1
    assert value(after, "wheelyard_publishes_total", outcome="already-on-index") == 1
    assert total(after, "wheelyard_build_step_duration_seconds_count") > 0

    api = scrape(f"{s.api}/metrics")
    assert value(api, "wheelyard_build_retries_total", reason="requested") == 1
    assert value(api, "wheelyard_builds", status="waiting-for-capability") == 2
    assert value(api, "wheelyard_builds", status="published") == 1
    waiting = "wheelyard.cp310-manylinux_x86_64"
    assert value(api, "wheelyard_queue_depth", queue=waiting) == 1
    assert value(api, "wheelyard_queue_workers", queue=waiting) == 0  # what the no-worker alert fires on
    assert value(api, "wheelyard_broker_messages", queue=waiting) == 1
    assert value(api, "wheelyard_queue_oldest_age_seconds", queue=waiting) > 0
    assert value(api, "wheelyard_worker_target", worker=worker_name, target="py3-none-any") == 1

    # The index: one upload published, the second refused as existing; and once more by hand.
    index = scrape(f"http://127.0.0.1:{index_metrics}/metrics")
    assert value(index, "wheelyard_index_uploads_total", outcome="published") == 1
    assert value(index, "wheelyard_index_uploads_total", outcome="exists") == 1
    wheel = s.build(built)["wheel"]
    local = tmp_path / wheel
    local.write_bytes(requests.get(f"http://127.0.0.1:{s.index_port}/packages/{wheel}", timeout=30).content)
    with pytest.raises(AlreadyPublished):
        publish_wheel(local, index_url=f"http://127.0.0.1:{s.index_port}", user="wheelyard", password=s.password)
    index = scrape(f"http://127.0.0.1:{index_metrics}/metrics")
    assert value(index, "wheelyard_index_uploads_total", outcome="exists") == 2

    # Clients' page requests, reported by the index to the API: a hit and a miss by target.
    agent = pip_user_agent("3.12", tmp_path)
    for project in ("iniconfig", "wheelyard-metrics-absent"):
        page = requests.get(f"{s.simple}{project}/", headers={"User-Agent": agent}, timeout=10)
        assert page.status_code == (200 if project == "iniconfig" else 404)

    def reported() -> Samples | None:
        found = scrape(f"{s.api}/metrics")
        hits = total(found, "wheelyard_index_requests_total", outcome="hit")
        return found if hits == 1 and total(found, "wheelyard_index_requests_total", outcome="miss") == 1 else None

    api = wait_until(reported, 30, "the index's reports of the page requests")
    seen = [dict(labels) for (n, labels), v in api.items() if n == "wheelyard_index_requests_total" and v]
    targets = {labels["target"] for labels in seen if labels["outcome"] in ("hit", "miss")}
    assert len(targets) == 1 and targets.pop().startswith("cp312-"), seen
    assert value(api, "wheelyard_misses") == 1
