"""Logs: one JSON object per line off a terminal, with the build in every line of a build.

A real `wheelyard up` (its index, API and Celery worker, and its supervisor) builds one
package from its sdist; every line it writes to stderr is parsed as JSON, and every line
about that build carries its build id, target and step. A `wheelyard up` whose worker can
never start gives up on it, says why, and keeps the index and API running.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from builder.logs import BuildContextFilter, JsonFormatter, TextFormatter, build_context, set_step
from tests.conftest import (
    REDIS_SERVER,
    RedisDatabases,
    free_port,
    start_up,
    wait_until,
)
from tests.test_config import write_toml

ROOT = Path(__file__).resolve().parent.parent


def _record(message: str, *args: Any, name: str = "builder.worker") -> logging.LogRecord:
    record = logging.LogRecord(name, logging.INFO, __file__, 1, message, args, None)
    BuildContextFilter().filter(record)
    return record


def test_a_record_in_a_build_carries_its_id_target_and_step_as_one_json_line() -> None:
    with build_context("0123456789abcdef", "cp312-manylinux_x86_64"):
        set_step("compile")
        inside = _record("line one\nline two")
    outside = _record("no build here")
    line = JsonFormatter("worker").format(inside)
    assert "\n" not in line
    data = json.loads(line)
    assert data["build_id"] == "0123456789abcdef" and data["target"] == "cp312-manylinux_x86_64"
    assert (data["step"], data["service"], data["message"]) == ("compile", "worker", "line one\nline two")
    assert "build_id" not in json.loads(JsonFormatter("worker").format(outside))
    text = TextFormatter().format(inside)
    assert "builder.worker: [0123456789abcdef cp312-manylinux_x86_64 compile] line one" in text


def test_celerys_lines_about_a_build_task_carry_its_build_id() -> None:
    # What celery.app.trace logs for a task that succeeded (its args as the task's argsrepr).
    record = _record(
        "Task %(name)s[%(id)s] succeeded in %(runtime)ss: %(return_value)s",
        {"name": "wheelyard.build", "id": "c3f1", "args": "['fedcba9876543210']", "runtime": 1.0, "return_value": "x"},
        name="celery.app.trace",
    )
    assert json.loads(JsonFormatter("worker").format(record))["build_id"] == "fedcba9876543210"
    other = _record("Task %(name)s[%(id)s] received", {"name": "wheelyard.watch", "id": "1", "args": "['x']"})
    assert "build_id" not in json.loads(JsonFormatter("worker").format(other))


# -- a real `wheelyard up` ----------------------------------------------------------------------
@pytest.fixture
def leased_redis() -> Iterator[str]:
    with RedisDatabases(REDIS_SERVER) as databases:
        yield databases.take()


def _up(tmp_path: Path, redis_url: str, *args: str) -> tuple[subprocess.Popen[bytes], str, Path, Path]:
    api_port, index_port = free_port(), free_port()
    config = write_toml(
        tmp_path / "wheelyard.toml",
        {"data_dir": tmp_path / "data", "redis_url": redis_url, "api_port": api_port, "index_port": index_port},
    )
    out, err = tmp_path / "up.out", tmp_path / "up.err"
    up = start_up(config, *args, log=out, err=err)
    return up, f"http://127.0.0.1:{api_port}", out, err


def _stop(up: subprocess.Popen[bytes]) -> None:
    if up.poll() is None:
        os.kill(up.pid, signal.SIGTERM)
        up.wait(timeout=90)


def _records(err: Path) -> list[dict[str, Any]]:
    """Every line of `up`'s stderr, each parsed as one JSON object (a line that is not fails the test)."""
    records = []
    for number, line in enumerate(err.read_text().splitlines(), 1):
        try:
            records.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"line {number} of `wheelyard up`'s stderr is not JSON: {line!r}") from None
        assert isinstance(records[-1], dict) and {"time", "level", "logger", "service", "message"} <= set(records[-1])
    return records


def _healthy(api: str) -> bool:
    try:
        return requests.get(f"{api}/api/health", timeout=3).status_code == 200
    except requests.RequestException:
        return False


@pytest.mark.slow
def test_every_line_of_wheelyard_up_is_json_and_a_builds_lines_carry_its_id(tmp_path: Path, leased_redis: str) -> None:
    up, api, out, err = _up(tmp_path, leased_redis, "--targets", "py3-none-any")
    try:
        wait_until(
            lambda: _healthy(api) and requests.get(f"{api}/api/workers", timeout=3).json()["workers"],
            180,
            "`wheelyard up` to be ready",
        )
        response = requests.post(
            f"{api}/api/builds",
            json={"requirement": "iniconfig==2.0.0", "targets": ["py3-none-any"], "from_source": True},
            timeout=60,
        )
        assert response.status_code == 202, response.text
        build_id = response.json()["builds"][0]["id"]

        def finished() -> bool:
            status = requests.get(f"{api}/api/builds/{build_id}", timeout=10).json()["status"]
            assert status != "failed", err.read_text()[-5000:]
            return bool(status == "published")

        wait_until(finished, 300, "the build to be published")
        # Celery's line that the task succeeded comes once the outcome is recorded: poll for it.
        wait_until(lambda: "succeeded in" in err.read_text(), 30, "Celery's line that the build task succeeded")
    finally:
        _stop(up)
    assert "wheelyard is up" in out.read_text()
    records = _records(err)
    assert {r["service"] for r in records} >= {"up", "index", "api", "worker"}, {r["service"] for r in records}
    build = [r for r in records if r.get("build_id") == build_id]
    about = [r for r in records if build_id in r["message"]]
    assert about and all(r.get("build_id") == build_id for r in about), [r for r in about if "build_id" not in r]
    # The worker's own lines (in the pool process, each step), and Celery's received and succeeded.
    loggers = {r["logger"] for r in build}
    assert {"builder.worker", "celery.app.trace", "celery.worker.strategy"} <= loggers, loggers
    assert all(r.get("target") == "py3-none-any" for r in build if r["logger"] == "builder.worker")
    messages = [r["message"] for r in build]
    assert any(m.endswith("run 1") for m in messages) and any(m.endswith(": published") for m in messages), messages
    print(f"{len(records)} JSON lines; {len(build)} carry build {build_id}: {sorted(loggers)}")


@pytest.mark.slow
def test_up_gives_up_on_a_worker_that_can_never_start_and_keeps_the_rest(tmp_path: Path, leased_redis: str) -> None:
    # An x86_64 host builds no aarch64 wheel: the worker refuses to start, every time.
    up, api, out, err = _up(tmp_path, leased_redis, "--targets", "cp312-manylinux_aarch64")
    try:
        wait_until(lambda: "is not started again" in out.read_text(), 240, "`up` to give up on the worker")
        assert up.poll() is None and _healthy(api)
        said = out.read_text()
        assert "wheelyard: the worker is not started again: it ended 6 times in a row" in said, said
        assert "this worker cannot build cp312-manylinux_aarch64" in said and "[target-not-buildable]" in said, said
        gave_up = [r for r in _records(err) if "is not started again" in r["message"]]
        assert len(gave_up) == 1 and gave_up[0]["level"] == "error" and gave_up[0]["service"] == "up"
        assert requests.get(f"{api}/api/builds", timeout=10).status_code == 200
    finally:
        _stop(up)
    starts = [r for r in _records(err) if r["service"] == "worker" and r["level"] == "error"]
    assert len(starts) == 6, starts  # the first start and five more, then no more
