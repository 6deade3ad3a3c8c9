"""The operator's panels of the dashboard, in a real headless Chromium against a real stack.

A real index, API, worker and beat: the beat ensures a watch list of two projects for two
targets. iniconfig's universal wheel is mirrored (it serves both targets); PyAudio's sdist
fails to compile for the target the worker builds (no portaudio.h here) and waits for a
worker for the other, which no worker builds: the list is half on the index for each target,
and the panel says why each wheel is missing. A client asks the index for a project it does
not have: the miss is shown with its target and count.

Builds waiting for a capability and a build a remedy made are records with the fields the
routing and the remedies write (``missing_capability``, ``remedy``), seeded through the record
store as a worker writes them: the routing and the remedies that write them for real were not
in the code this test was written against, and the test is about what the dashboard shows of
such records.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from builder.records import BuildRecord, BuildStore
from tests.conftest import Stack, wait_until
from tests.demand_clients import pip_user_agent
from tests.test_dashboard import Browser

CP312, CP313 = "cp312-manylinux_x86_64", "cp313-manylinux_x86_64"


def _seed(store: BuildStore, build_id: str, name: str, status: str, **fields: Any) -> None:
    now = time.time()
    record = BuildRecord(
        id=build_id,
        name=name,
        version="1.0",
        target=CP312,
        requirement=f"{name}==1.0",
        queue=f"wheelyard.{CP312}",
        status=status,
        created_at=now - 60,
        finished_at=now - 10 if status == "published" else None,
        **fields,
    )
    store.save(record)


def _readiness(stack: Stack) -> dict[str, Any] | None:
    lists = requests.get(f"{stack.api}/api/dashboard/readiness", timeout=10).json()["lists"]
    if not lists:
        return None
    targets = lists[0]["targets"]
    settled = all(t["missing"] and t["missing"][0]["outcome"] in ("failed", "waiting-for-worker",
                  "waiting-for-capability") for t in targets.values())  # fmt: skip
    return dict(lists[0]) if settled and len(targets) == 2 else None


@pytest.mark.slow
def test_readiness_misses_capabilities_and_remedies_in_chromium(make_stack: Any, tmp_path: Path) -> None:
    watch = tmp_path / "watch.toml"
    projects = '["iniconfig==2.0.0", "pyaudio==0.2.14"]'
    watch.write_text(f'[[watch]]\nname = "web"\nprojects = {projects}\ntargets = ["{CP312}", "{CP313}"]\n')
    stack = make_stack(
        db=33, WHEELYARD_WATCH_FILE=str(watch), WHEELYARD_WATCH_INTERVAL="5", WHEELYARD_WATCH_RETRIES="0"
    )
    stack.start_index_and_api()
    stack.start_worker("worker-ops", f"py3-none-any,{CP312}")
    stack.start("beat", "beat")

    store = BuildStore(redis.Redis.from_url(stack.redis_url))
    _seed(store, "capwait00000001", "scipy", "waiting-for-capability", missing_capability="tool:gfortran")
    _seed(store, "capwait00000002", "pyfftw", "waiting-for-capability", missing_capability="lib:fftw3")
    wheel = "oldpkg-1.0-cp312-cp312-manylinux_2_17_x86_64.whl"
    _seed(store, "remedy000000001", "oldpkg", "published", remedy="cython-regenerate", wheel=wheel)

    agent = pip_user_agent("3.12", tmp_path)
    assert (
        requests.get(f"{stack.simple}wheelyard-dash-absent/", headers={"User-Agent": agent}, timeout=10).status_code
        == 404
    )

    web = wait_until(lambda: _readiness(stack), 600, "the watch list's run to settle" + stack.log("beat")[-3000:])
    for target in (CP312, CP313):
        state = web["targets"][target]
        assert (state["total"], state["on_index"], state["share"]) == (2, 1, 0.5), state
        assert [m["name"] for m in state["missing"]] == ["pyaudio"], state
    assert web["targets"][CP313]["missing"][0]["why"] == f"no live worker builds {CP313}"
    broken = web["targets"][CP312]["missing"][0]
    capability = broken["capability"]
    assert capability and broken["why"] == f"needs {capability}", broken
    wait_until(lambda: requests.get(f"{stack.api}/api/misses", timeout=10).json()["misses"], 30, "the miss")

    browser = Browser(tmp_path / "profile", tmp_path / "chromium.log", height=1800)
    try:
        browser.open(f"{stack.api}/")
        shown = browser.wait(
            "(() => { const r = document.querySelectorAll('#readiness .ready');"
            " const m = document.querySelectorAll('#miss-rows tr');"
            " const c = document.querySelectorAll('#capability-rows tr');"
            " const e = document.querySelectorAll('#remedy-rows tr');"
            " return r.length === 2 && m.length === 1 && c.length >= 2 && e.length === 1"
            " && JSON.stringify({ready: [...r].map((e) => e.innerText),"
            " capability: document.getElementById('capability-panel').innerText,"
            " remedies: document.getElementById('remedy-panel').innerText,"
            " misses: document.getElementById('miss-rows').innerText}); })()",
            "the operator's panels to show",
        )
        page = json.loads(shown)
        cp312_row = next(row for row in page["ready"] if row.startswith(CP312))
        assert "1 of 2 wheels on the index (50%)" in cp312_row and f"pyaudio 0.2.14 needs {capability}" in cp312_row
        cp313_row = next(row for row in page["ready"] if row.startswith(CP313))
        assert f"pyaudio 0.2.14 no live worker builds {CP313}" in cp313_row, cp313_row
        assert "wheelyard-dash-absent" in page["misses"] and "cp312-" in page["misses"], page["misses"]
        assert "tool:gfortran × 1" in page["capability"] and "lib:fftw3 × 1" in page["capability"], page
        assert "scipy 1.0" in page["capability"] and "tool:gfortran" in page["capability"], page
        assert "oldpkg 1.0" in page["remedies"] and "cython-regenerate × 1" in page["remedies"], page
        assert browser.errors() == []
        shot = tmp_path / "dashboard-operator.png"
        data = browser.screenshot(shot)
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 30_000
        print(f"screenshot: {shot}")
    finally:
        browser.close()


def test_readiness_follows_the_builds_of_the_missing_wheels(make_stack: Any) -> None:
    from server.ensure.report import Item, Report
    from server.watch.readiness import current_readiness, readiness_of, save_readiness

    stack = make_stack(db=34)
    store = BuildStore(redis.Redis.from_url(stack.redis_url))
    _seed(store, "build00000000001", "lxml", "queued")
    report = Report(
        [CP312, CP313],
        items=[
            Item("six", "1.17.0", "py3-none-any", [CP312, CP313], "present", wheel="six-1.17.0-py2.py3-none-any.whl"),
            Item("lxml", "5.3.0", CP312, [CP312], "queued", build_id="build00000000001"),
            Item("lxml", "5.3.0", CP313, [CP313], "failed", error={"message": "no compiler"}),
        ],
    )
    save_readiness(store.redis, readiness_of("web", report))
    served = {f"wheelyard.{CP312}": ["w"]}
    [web] = current_readiness(store.redis, served)
    assert {t: (s["on_index"], s["total"], [m["why"] for m in s["missing"]]) for t, s in web["targets"].items()} == {
        CP312: (1, 2, ["queued"]),
        CP313: (1, 2, ["failed: no compiler"]),
    }
    assert (
        current_readiness(store.redis, {})[0]["targets"][CP312]["missing"][0]["why"] == f"no live worker builds {CP312}"
    )
    store.update("build00000000001", status="published", wheel="lxml-5.3.0-cp312-cp312-manylinux_2_17_x86_64.whl")
    [web] = current_readiness(store.redis, served)
    assert (web["targets"][CP312]["share"], web["targets"][CP312]["missing"]) == (1.0, [])
