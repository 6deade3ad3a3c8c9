"""End to end on real parts: a real Redis, real worker processes, a real pypiserver, real pip.

request -> Celery worker -> sdist from PyPI (hash-checked) -> build with the target
interpreter -> auditwheel -> proof -> upload to the private index -> pip installs it
without a compiler.
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from packaging.utils import parse_wheel_filename

from tests.conftest import Stack, isolated_pip_env, pip_install_from_index

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Any:
    """One stack for the module: index, API, and a worker for cp311, cp312, cp313 and pure wheels."""
    s = Stack(tmp_path_factory.mktemp("spine"), redis_url)
    s.start_index_and_api()
    s.start_worker(
        "worker-main",
        "cp311-manylinux_x86_64,cp312-manylinux_x86_64,cp313-manylinux_x86_64,py3-none-any",
    )
    yield s
    s.stop_all()


def test_from_source_for_two_interpreters_then_pip_installs_without_compiling(stack: Stack, tmp_path: Path) -> None:
    response = stack.request(
        "markupsafe==3.0.2", ["cp311-manylinux_x86_64", "cp312-manylinux_x86_64"], from_source=True
    )
    assert response.status_code == 202, response.text
    builds = response.json()["builds"]
    assert [b["target"] for b in builds] == ["cp311-manylinux_x86_64", "cp312-manylinux_x86_64"]
    for b in builds:
        done = stack.wait_done(b["id"])
        assert done["status"] == "published", (done, stack.log("worker-main"))
        assert done["source"] == "markupsafe-3.0.2.tar.gz"
        _, _, _, tags = parse_wheel_filename(done["wheel"])
        assert all(t.platform.startswith("manylinux") for t in tags), done["wheel"]
        assert len(done["sha256"]) == 64
        log = requests.get(done["log_url"], timeout=10).text
        assert "==> build" in log and "==> prove" in log and "imported markupsafe" in log

    for version in ("3.11", "3.12"):
        python, urls = pip_install_from_index(stack.simple, version, tmp_path, "markupsafe==3.0.2")
        url = urls["markupsafe"]
        assert url.startswith(f"http://127.0.0.1:{stack.index_port}/"), url
        assert "manylinux" in url
        out = subprocess.run(
            [str(python), "-c", "import markupsafe._speedups as s, markupsafe; print(s.__file__)"],
            check=True,
            capture_output=True,
            text=True,
            env=isolated_pip_env(),
        )
        assert ".so" in out.stdout


def test_pinned_old_release_without_upstream_wheel_is_built_for_cp313(stack: Stack, tmp_path: Path) -> None:
    # MarkupSafe 2.1.3 (June 2023) ships wheels up to cp312 and an sdist: pip on 3.13 would compile it.
    response = stack.request("markupsafe==2.1.3", ["cp313-manylinux_x86_64"])
    assert response.status_code == 202, response.text
    build = response.json()["builds"][0]
    done = stack.wait_done(build["id"])
    assert done["status"] == "published", (done, stack.log("worker-main"))
    assert done["source"] == "MarkupSafe-2.1.3.tar.gz"
    assert "-cp313-cp313-manylinux" in done["wheel"]
    python, urls = pip_install_from_index(stack.simple, "3.13", tmp_path, "markupsafe==2.1.3")
    url = urls["markupsafe"]
    assert url.startswith(f"http://127.0.0.1:{stack.index_port}/")
    subprocess.run([str(python), "-c", "import markupsafe._speedups"], check=True, env=isolated_pip_env())


def test_twenty_concurrent_requests_share_one_build(stack: Stack) -> None:
    results: list[requests.Response] = []
    lock = threading.Lock()

    def ask() -> None:
        r = stack.request("iniconfig==2.0.0", ["py3-none-any"], from_source=True)
        with lock:
            results.append(r)

    threads = [threading.Thread(target=ask) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.status_code == 202 for r in results), [r.text for r in results]
    ids = {r.json()["builds"][0]["id"] for r in results}
    assert len(ids) == 1
    assert sum(r.json()["builds"][0]["created"] for r in results) == 1
    done = stack.wait_done(ids.pop())
    assert done["status"] == "published", done
    assert done["runs"] == 1
    listed = requests.get(f"{stack.api}/api/builds", params={"name": "iniconfig"}, timeout=10).json()["builds"]
    assert len(listed) == 1
    # A target already on the index answers at once, with the same build.
    again = stack.request("iniconfig==2.0.0", ["py3-none-any"], from_source=True).json()["builds"][0]
    assert again["id"] == done["id"] and again["status"] == "published" and again["created"] is False


def test_target_without_worker_waits_until_one_joins(stack: Stack) -> None:
    response = stack.request("markupsafe==3.0.2", ["cp310-manylinux_x86_64"], from_source=True)
    assert response.status_code == 202
    build = response.json()["builds"][0]
    assert build["status"] == "waiting-for-worker"
    assert stack.build(build["id"])["status"] == "waiting-for-worker"
    listed = requests.get(f"{stack.api}/api/builds", params={"status": "waiting-for-worker"}, timeout=10).json()
    assert build["id"] in [b["id"] for b in listed["builds"]]
    stack.start_worker("worker-cp310", "cp310-manylinux_x86_64")
    done = stack.wait_done(build["id"])
    assert done["status"] == "published", (done, stack.log("worker-cp310"))
    assert done["worker"].startswith("worker-cp310-")
    stack.stop("worker-cp310")


@pytest.mark.parametrize(
    ("body", "status", "reference", "says"),
    [
        (
            {"requirement": "markupsafe==3.0.2", "targets": ["cp312-linux_x86_64"]},
            422,
            "invalid-build-identifier",
            "unknown platform",
        ),
        (
            {"requirement": "markupsafe==3.0.2", "targets": ["cp27-manylinux_x86_64"]},
            422,
            "invalid-build-identifier",
            "cpXY",
        ),
        (
            {"requirement": "markupsafe[==3.0.2", "targets": ["cp312-manylinux_x86_64"]},
            422,
            "invalid-requirement",
            "not a valid requirement",
        ),
        (
            {"requirement": "wheelyard-no-such-package-x9q", "targets": ["cp312-manylinux_x86_64"]},
            404,
            "not-found-upstream",
            "does not exist",
        ),
        (
            {"requirement": "markupsafe==99.0.0", "targets": ["cp312-manylinux_x86_64"]},
            404,
            "not-found-upstream",
            "no release",
        ),
        ({"requirement": "markupsafe==3.0.2", "targets": []}, 422, "invalid-request", "targets"),
        ({"requirement": "markupsafe==3.0.2"}, 422, "invalid-request", "targets"),
    ],
)
def test_bad_requests_are_refused_and_nothing_is_queued(
    stack: Stack, body: dict[str, Any], status: int, reference: str, says: str
) -> None:
    client = redis.Redis.from_url(stack.redis_url)
    before = client.zcard("wheelyard:builds")
    queued_before = sum(client.llen(k) for k in client.scan_iter("wheelyard.*") if client.type(k) == b"list")
    response = requests.post(f"{stack.api}/api/builds", json=body, timeout=60)
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["error"] == reference
    assert says in (payload["message"] + " " + (payload.get("hint") or "")), payload
    assert "Traceback" not in response.text
    assert client.zcard("wheelyard:builds") == before
    queued_after = sum(client.llen(k) for k in client.scan_iter("wheelyard.*") if client.type(k) == b"list")
    assert queued_after == queued_before


def test_without_from_source_the_upstream_wheels_are_mirrored(make_stack: Any, tmp_path: Path) -> None:
    s = make_stack(db=10)
    s.start_index_and_api()
    s.start_worker("worker-mirror", "cp311-manylinux_x86_64,cp312-manylinux_x86_64")
    response = s.request("markupsafe==3.0.2", ["cp311-manylinux_x86_64", "cp312-manylinux_x86_64"])
    assert response.status_code == 202, response.text
    for b in response.json()["builds"]:
        done = s.wait_done(b["id"])
        assert done["status"] == "mirrored", (done, s.log("worker-mirror"))
        assert done["source"] == done["wheel"] and done["wheel"].startswith("MarkupSafe-3.0.2-")
        assert "==> build" not in requests.get(done["log_url"], timeout=10).text
    python, urls = pip_install_from_index(s.simple, "3.12", tmp_path, "markupsafe==3.0.2")
    url = urls["markupsafe"]
    assert url.startswith(f"http://127.0.0.1:{s.index_port}/")
    subprocess.run([str(python), "-c", "import markupsafe._speedups"], check=True, env=isolated_pip_env())


def test_cli_request_waits_and_reports(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    import io

    from server.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = main(
        [
            "request",
            "markupsafe==3.0.2",
            "-t",
            "cp312-manylinux_x86_64",
            "--from-source",
            "--wait",
            "--api-url",
            stack.api,
        ],
        stdout=out,
        stderr=err,
    )
    assert code == 0, err.getvalue()
    assert "cp312-manylinux_x86_64: published markupsafe-3.0.2-cp312-cp312-manylinux" in out.getvalue()

    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["request", "markupsafe==3.0.2", "-t", "cp312-nope", "--api-url", stack.api],
        stdout=out,
        stderr=err,
    )
    assert code == 1
    assert "error:" in err.getvalue() and "hint:" in err.getvalue() and "Traceback" not in err.getvalue()

    code = main(
        [
            "request",
            "markupsafe==3.0.2",
            "-t",
            "cp312-manylinux_x86_64",
            "--api-url",
            "http://127.0.0.1:9",
        ],
        stdout=out,
        stderr=err,
    )
    assert code == 1 and "does not answer" in err.getvalue()


def test_failed_build_is_diagnosed_and_not_rebuilt_unless_asked(stack: Stack) -> None:
    # PyAudio needs portaudio.h, which this machine does not have: a real compiler failure. No
    # worker has lib:portaudio, so the diagnosed build waits for one (builder/routing.py).
    response = stack.request("pyaudio==0.2.14", ["cp312-manylinux_x86_64"], from_source=True)
    assert response.status_code == 202, response.text
    first = stack.wait_done(response.json()["builds"][0]["id"])
    assert first["status"] == "waiting-for-capability" and first["missing_capability"] == "lib:portaudio"
    primary = first["diagnosis"]["primary"]
    assert primary["category"] == "missing-library-header"
    assert "portaudio" in (primary["detail"] or "").lower()
    log = requests.get(first["log_url"], timeout=10).text
    assert "wheelyard: diagnosis: missing-library-header" in log
    assert log.splitlines()[primary["line"] - 1].strip() == primary["text"].strip()
    # Asked again with nothing changed: the same failed build answers, nothing is queued.
    again = stack.request("pyaudio==0.2.14", ["cp312-manylinux_x86_64"], from_source=True).json()["builds"][0]
    assert again["id"] == first["id"] and again["created"] is False and again["status"] == "waiting-for-capability"
    # --retry builds it again.
    retried = stack.request("pyaudio==0.2.14", ["cp312-manylinux_x86_64"], from_source=True, retry=True)
    build = retried.json()["builds"][0]
    assert build["id"] != first["id"] and build["created"] is True
    assert stack.wait_done(build["id"])["status"] == "waiting-for-capability"
