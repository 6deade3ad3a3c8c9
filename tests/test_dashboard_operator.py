"""The operator's panels of the dashboard, in a real headless Chromium against a real stack.

A real index, API, worker and beat: the beat ensures a watch list of two projects for two
targets. iniconfig's universal wheel is mirrored (it serves both targets); PyAudio's sdist
fails to compile for the target the worker builds (no portaudio.h here), so the build waits
for a worker with ``lib:portaudio`` (builder.routing), and it waits for a worker for the other
target, which no worker builds: the list is half on the index for each target, and the panel
says why each wheel is missing. A client asks the index for a project it does not have: the
miss is shown with its target and count. msgpack 1.0.5's generated C does not compile for
CPython 3.13; the worker regenerates it with a current Cython (the remedy) and publishes: the
remedy panel shows that build.
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

CP311, CP312, CP313 = "cp311-manylinux_x86_64", "cp312-manylinux_x86_64", "cp313-manylinux_x86_64"


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
    watch.write_text(f'[[watch]]\nname = "web"\nprojects = {projects}\ntargets = ["{CP312}", "{CP311}"]\n')
    stack = make_stack(
        db=33, WHEELYARD_WATCH_FILE=str(watch), WHEELYARD_WATCH_INTERVAL="5", WHEELYARD_WATCH_RETRIES="0"
    )
    stack.start_index_and_api()
    stack.start_worker("worker-ops", f"py3-none-any,{CP312},{CP313}")
    stack.start("beat", "beat")
    remedied = stack.request("msgpack==1.0.5", [CP313], from_source=True).json()["builds"][0]["id"]

    agent = pip_user_agent("3.12", tmp_path)
    assert (
        requests.get(f"{stack.simple}wheelyard-dash-absent/", headers={"User-Agent": agent}, timeout=10).status_code
        == 404
    )

    web = wait_until(lambda: _readiness(stack), 600, "the watch list's run to settle" + stack.log("beat")[-3000:])
    for target in (CP312, CP311):
        state = web["targets"][target]
        assert (state["total"], state["on_index"], state["share"]) == (2, 1, 0.5), state
        assert [m["name"] for m in state["missing"]] == ["pyaudio"], state
    assert web["targets"][CP311]["missing"][0]["why"] == f"no live worker builds {CP311}"
    broken = web["targets"][CP312]["missing"][0]
    assert (broken["outcome"], broken["capability"]) == ("waiting-for-capability", "lib:portaudio"), broken
    assert broken["why"] == "needs lib:portaudio", broken
    wait_until(lambda: requests.get(f"{stack.api}/api/misses", timeout=10).json()["misses"], 30, "the miss")
    done = stack.wait_done(remedied)
    assert (done["status"], done["remedy"]) == ("published", "regenerate-cython"), (done, stack.log("worker-ops"))

    browser = Browser(tmp_path / "profile", tmp_path / "chromium.log", height=1800)
    try:
        browser.open(f"{stack.api}/")
        shown = browser.wait(
            "(() => { const r = document.querySelectorAll('#readiness .ready');"
            " const m = document.querySelectorAll('#miss-rows tr');"
            " const c = document.querySelectorAll('#capability-rows tr');"
            " const e = document.querySelectorAll('#remedy-rows tr');"
            " return r.length === 2 && m.length === 1 && c.length >= 1 && e.length === 1"
            " && JSON.stringify({ready: [...r].map((e) => e.innerText),"
            " capability: document.getElementById('capability-panel').innerText,"
            " remedies: document.getElementById('remedy-panel').innerText,"
            " misses: document.getElementById('miss-rows').innerText}); })()",
            "the operator's panels to show",
        )
        page = json.loads(shown)
        cp312_row = next(row for row in page["ready"] if row.startswith(CP312))
        assert "1 of 2 wheels on the index (50%)" in cp312_row and "pyaudio 0.2.14 needs lib:portaudio" in cp312_row
        cp311_row = next(row for row in page["ready"] if row.startswith(CP311))
        assert f"pyaudio 0.2.14 no live worker builds {CP311}" in cp311_row, cp311_row
        assert "wheelyard-dash-absent" in page["misses"] and "cp312-" in page["misses"], page["misses"]
        assert "lib:portaudio × 1" in page["capability"] and "pyaudio 0.2.14" in page["capability"], page
        assert "msgpack 1.0.5" in page["remedies"] and "regenerate-cython × 1" in page["remedies"], page
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
